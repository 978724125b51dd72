"""What every gdexp sweeper does around its jobs: check them all first, open the parent run,
collect the rows the jobs return."""
from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from gdexp.core.errors import ConfigError
from gdexp.core.outcomes import FAILED
from gdexp.specs.run_spec import RunSpec
from gdexp.hydra.compose import JobComposer, shared_composer
from gdexp.hydra.internals import job_error
from gdexp.tracking.parent_run import Sweep
from gdexp.tracking.plan import resumed


def composer(sweeper) -> JobComposer:
    """The sweep's composer, shared with its launcher (kept on the launcher instance)."""
    return shared_composer(sweeper.launcher, sweeper.hydra_context.config_loader, sweeper.config)


def validate_jobs(comp: JobComposer, jobs: list[list[str]]) -> list[RunSpec]:
    """Compose and plan every job (each once); the first bad one raises ConfigError naming it."""
    return [comp.spec(list(overrides), num) for num, overrides in enumerate(jobs)]


def data_checksums(specs: list[RunSpec]) -> list[str]:
    """The data files' checksums the jobs were validated with (pinned in the sweep's plan)."""
    return sorted({s.loss.data_sha256() for s in specs if s.loss.data_sha256()})


def resumed_jobs(jobs: list[list[str]], specs: list[RunSpec]) -> frozenset[str]:
    """When `gdexp resume` runs this sweep again: the config hashes that already have a FINISHED
    run (to skip), after checking that every job is still the one the plan holds; else nothing.

    Raises:
        ConfigError: a job whose config hash changed since the sweep started (its data file
            or loss code), or jobs that are not the planned ones.
    """
    again = resumed()
    if again is None:
        return frozenset()
    sweep_plan, finished = again
    if len(sweep_plan.jobs) != len(jobs):
        raise ConfigError("sweep", sweep_plan.sweep_name, f"now has {len(jobs)} jobs, its plan {len(sweep_plan.jobs)}: "
                          "the command or its named sweep changed since it started; start a new sweep")
    for num, (job, spec) in enumerate(zip(sweep_plan.jobs, specs)):
        if job["config_hash"] != spec.config_hash:
            raise ConfigError(f"job #{num}", " ".join(jobs[num]), f"config hash {spec.config_hash}, planned "
                              f"{job['config_hash']}: its data file or loss code changed since the sweep "
                              "started; restore it, or start a new sweep")
    return finished


def to_launch(batch: list[list[str]], specs: list[RunSpec], done: frozenset[str]) -> list[tuple[int, list]]:
    """The jobs of `batch` to launch, as runs of consecutive ones: [(offset in batch, jobs)];
    a job whose config hash is `done` is left out (so the others keep their numbers).

    >>> class S: config_hash = "x"
    >>> to_launch([["a"], ["b"], ["c"]], [S(), S(), S()], frozenset())
    [(0, [['a'], ['b'], ['c']])]
    """
    runs: list[tuple[int, list]] = []
    for i, (job, spec) in enumerate(zip(batch, specs)):
        if spec.config_hash in done:
            continue
        if runs and runs[-1][0] + len(runs[-1][1]) == i:
            runs[-1][1].append(job)
        else:
            runs.append((i, [job]))
    return runs


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
    from hydra.core.utils import JobStatus

    if ret.status == JobStatus.FAILED:  # its error, without Hydra's "Error executing job" line (we say it once)
        error = job_error(ret)
        reason = f"{type(error).__name__}: {error}"
    else:
        value = ret.return_value
        if isinstance(value, dict):
            return value
        reason = f"the job returned {type(value).__name__}, not a run"
    return {"run_id": None, "run_name": " ".join(overrides), "status": FAILED, "mlflow_status": None,
            "error": reason}
