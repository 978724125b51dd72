"""The ``tracking`` config section: where and how much of each run goes to MLflow."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Annotated

from gdexp.core.errors import ConfigError
from gdexp.core.params import Range, check_section

# A folder name per experiment (mlartifacts/<name>) must fit a filesystem's 255 bytes.
MAX_EXPERIMENT_NAME = 200


@dataclass(frozen=True)
class TrackingConfig:
    """The schema of conf/tracking/ (defaults there).

    Attributes:
        uri: MLflow tracking URI; None = sqlite:///<start folder>/mlflow.db.
            MLFLOW_TRACKING_URI in the environment wins, as in MLflow.
        experiment: MLflow experiment name.
        curve_points: steps of each curve logged to MLflow (curve.parquet keeps every step);
            320 is what the MLflow UI draws of a curve (its get-history-bulk-interval
            requests ask for 320 points), so every logged point is drawn.
        eval_every: steps between evaluations: a loss's validation metrics (val_loss,
            val_accuracy) and, under mini-batches, the full training loss (on which
            divergence is judged); 0 = at the start and the end only.
        sharpness_every: steps between measurements of the sharpness, the largest
            eigenvalue of the loss's Hessian (logged with 2/lr); 0 = never.
        live_every: seconds between writes of a sweep's runs while they descend (RUNNING,
            their curves so far: gdexp.tracking.live); 0 = written when their batch ends. How a
            run is watched, not what it is: left out of its record (content.recorded).
    """

    uri: str | None = None
    experiment: str = "gdexp"
    curve_points: Annotated[int, Range(ge=2, finite=False)] = 320
    eval_every: Annotated[int, Range(ge=0, finite=False)] = 100
    sharpness_every: Annotated[int, Range(ge=0, finite=False)] = 0
    live_every: Annotated[float, Range(ge=0)] = 10.0


def check_tracking(section: dict) -> dict:
    """The tracking section with every key known and in range (ConfigError otherwise).

    >>> check_tracking({"experiment": " "})
    Traceback (most recent call last):
    ...
    gdexp.core.errors.ConfigError: tracking.experiment=' ': must not be empty
    """
    checked = {**asdict(TrackingConfig()), **check_section("tracking", TrackingConfig, section, "settings")}
    name = checked["experiment"]
    if not name.strip():
        raise ConfigError("tracking.experiment", name, "must not be empty")
    if len(name) > MAX_EXPERIMENT_NAME:
        raise ConfigError("tracking.experiment", name[:40] + "...",
                          f"is {len(name)} characters; at most {MAX_EXPERIMENT_NAME}")
    return checked
