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
        curve_points: steps of each curve logged to MLflow (curve.parquet keeps every step).
    """

    uri: str | None = None
    experiment: str = "gdexp"
    curve_points: Annotated[int, Range(ge=2, finite=False)] = 1000


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
