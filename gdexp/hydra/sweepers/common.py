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


def varied_keys(jobs: list[list[str]], comp: JobComposer) -> tuple[str, ...]:
    """The dotted keys whose values differ between the jobs (or that some jobs lack).

    From the overrides, not from every job's config (a 100,000-job sweep would flatten and
    compare millions of values): each swept value key (swept_keys), and under each swept
    config group (``optimizer=gd,momentum``) the keys that differ between its options,
    compared on one job per distinct group selection (planned here; a bad one is left for
    validate_jobs to name, in job order). A key that only copies a swept one through an
    interpolation (``loss.seed: ${seed}``) is not seen.
    """
    from gdexp.specs.run_spec import canonical
    from gdexp.tracking.content import flatten

    keys = list(swept_keys(jobs, comp))
    first: dict[tuple, int] = {}
    for num, job in enumerate(jobs):
        first.setdefault(comp.selection(list(job)), num)
    one_each = {}
    for sel, num in first.items():
        try:
            one_each[sel] = comp.spec(list(jobs[num]), num)
        except Exception:  # gdexp's or Hydra's refusal: validate_jobs says it, for the first bad job
            continue
    groups = [k for k in keys if any(isinstance(s.config.get(k), dict) for s in one_each.values())]
    out = [k for k in keys if k not in groups]
    for group in groups:
        flat = [flatten({group: s.config.get(group) or {}}) for s in one_each.values()]
        for key in dict.fromkeys(k for f in flat for k in f):
            texts = {canonical(f[key]) if key in f else None for f in flat}
            if len(texts) > 1 and key not in out:
                out.append(key)
    return tuple(out)


# Typed overrides that say where and how a sweep runs, not what it is: left out of its name.
_NOT_DEFINING = ("hydra", "tracking", "sweep")
_MAX_NAME = 250  # MLflow's limit on a run name


def sweep_name(config, argv: list[str] | None = None, swept: tuple[str, ...] = ()) -> str:
    """The sweep's name, after what defines it: the named sweep and every override typed beside it
    (``lr_grid optimizer=momentum``); without a named sweep (``gdexp -m``), the keys it sweeps, then
    the overrides it fixes (``optimizer.lr x seed loss=booth``). Overrides of hydra.* and
    tracking.* (where and how it runs) are left out.

    Args:
        config: the sweep's master config (its Hydra choices name the named sweep).
        argv: the `gdexp` arguments as typed (default: gdexp.tracking.provenance.command()).
        swept: the keys the jobs vary, for a sweep none of whose typed overrides is a sweep
            (its params in a config file).
    """
    from gdexp.tracking.provenance import command

    named = config.hydra.runtime.choices.get("sweep")
    typed = [a for a in (command() if argv is None else argv) if "=" in a and not a.startswith("-")]
    typed = [a for a in typed if a.partition("=")[0].lstrip("+~").split(".")[0].split("/")[0] not in _NOT_DEFINING]
    if named:
        name = " ".join([named, *typed])
    else:
        sweeping = [a for a in typed if _is_sweep(a)]
        keys = [a.partition("=")[0].lstrip("+~") for a in sweeping] or [k for k in swept if not k.startswith("hydra")]
        name = " ".join([" x ".join(keys), *(a for a in typed if a not in sweeping)]).strip() or "defaults"
    return name if len(name) <= _MAX_NAME else name[:_MAX_NAME - 3] + "..."


def _is_sweep(line: str) -> bool:
    """Whether a typed override sweeps (``a,b``, ``logspace(...)``, ``choice(...)``, ``interval(...)``).

    >>> _is_sweep("optimizer.lr=logspace(1e-4,1,5)"), _is_sweep("loss.eigenvalues=[1,100]"), _is_sweep("seed=0,1")
    (True, False, True)
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from gdexp.hydra.grids import expand

    try:
        return OverridesParser.create().parse_override(expand(line)).is_sweep_override()
    except Exception:  # Hydra says what is wrong with it when the sweep parses it
        return False


def sweep_of(config, comp: JobComposer | None = None) -> Sweep:
    """What the parent run needs from the sweep's master config (and the keys its jobs vary)."""
    launcher = config.hydra.get("launcher")
    name_keys, varied = (comp.name_keys, comp.varied) if comp is not None else ((), ())
    return Sweep(uri=config.tracking.uri, experiment=config.tracking.experiment,
                 name=sweep_name(config, swept=name_keys or varied), folder=Path(str(config.hydra.sweep.dir)),
                 launcher=None if launcher is None else OmegaConf.to_container(launcher, resolve=False),
                 named=config.hydra.runtime.choices.get("sweep"), name_keys=tuple(name_keys), varied=tuple(varied))


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
