"""What every gdexp sweeper does around its jobs: check them all first, open the parent run,
collect the rows the jobs return."""
from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from gdexp.core.outcomes import FAILED
from gdexp.core.spec import RunSpec
from gdexp.hydra.compose import JobComposer, shared_composer
from gdexp.tracking.parent_run import Sweep


def composer(sweeper) -> JobComposer:
    """The sweep's composer, shared with its launcher (one per master config)."""
    return shared_composer(sweeper.hydra_context.config_loader, sweeper.config)


def validate_jobs(comp: JobComposer, jobs: list[list[str]]) -> list[RunSpec]:
    """Compose and plan every job (each once); the first bad one raises ConfigError naming it."""
    return [comp.spec(list(overrides), num) for num, overrides in enumerate(jobs)]


def swept_keys(jobs: list[list[str]], comp: JobComposer) -> tuple[str, ...]:
    """The keys whose values differ between jobs, in first-seen order (for run names)."""
    seen: dict[str, set] = {}
    for overrides in jobs:
        for o in comp.parse(list(overrides)):
            seen.setdefault(o.key_or_group, set()).add(o.input_line)
    return tuple(key for key, lines in seen.items() if len(lines) > 1 and not key.startswith("hydra."))


def sweep_name(config) -> str:
    """The named sweep's name (`+sweep=NAME`), else 'multirun'."""
    return config.hydra.runtime.choices.get("sweep") or "multirun"


def sweep_of(config) -> Sweep:
    """What the parent run needs from the sweep's master config."""
    launcher = config.hydra.get("launcher")
    return Sweep(uri=config.tracking.uri, experiment=config.tracking.experiment, name=sweep_name(config),
                 folder=Path(str(config.hydra.sweep.dir)),
                 launcher=None if launcher is None else OmegaConf.to_container(launcher, resolve=False))


def start_folder(config) -> Path:
    """Create the sweep's folder and save its master config there, as Hydra's basic sweeper does."""
    folder = Path(str(config.hydra.sweep.dir))
    folder.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(config, folder / "multirun.yaml")
    return folder


def row_of(ret, overrides: list[str]) -> dict:
    """A job's summary row: what it returned, or, for a job that raised outside gdexp's
    recording (no MLflow run shows it), a failed row naming its overrides and error."""
    try:
        value = ret.return_value  # a job that raised raises here (Hydra's JobReturn)
    except Exception as error:
        reason = f"{type(error).__name__}: {error}"
    else:
        if isinstance(value, dict):
            return value
        reason = f"the job returned {type(value).__name__}, not a run"
    return {"run_id": None, "run_name": " ".join(overrides), "status": FAILED, "mlflow_status": None,
            "error": reason}
