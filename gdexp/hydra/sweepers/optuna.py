"""An Optuna sweeper over current Optuna's ask-and-tell API (hydra/sweeper=optuna).

Each round asks `batch_size` trials of a seeded TPE sampler, launches them as
one batch through the launcher (jobs that share a loss and an optimizer descend
together, vectorized), and tells each result back. A diverged run is a bad
result the sampler learns from, not a failed trial it ignores.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from omegaconf import OmegaConf

from gdexp.core.errors import ConfigError
from gdexp.core.outcomes import DESCENT_STATUSES, DIVERGED, FAILED
from gdexp.hydra.grids import clean
from gdexp.hydra.sweepers.search import Outcome, SearchSweeper, fixed_line
from gdexp.tracking import env
from gdexp.tracking.store import resolve_uri

_log = logging.getLogger(__name__)  # (`log` is _tell's flag)

# The objective is the metric a sweep is judged by (gdexp.results.groups.monitor, as best_lr is
# chosen): 1 - val_accuracy for a classifier with a validation part, else log10 of val_loss, else
# log10 of the final loss. log10 of the largest double is 308.25, so no finite loss (and a run that
# did not diverge always ends finite) comes near DIVERGED_VALUE: a diverged trial ranks below every other.
DIVERGED_VALUE = 309.0
# An exact zero loss ranks above every positive one (log10 of the smallest double is -323.3).
ZERO_LOSS_VALUE = -324.0


def judged_by(summary: dict) -> tuple[str, str]:
    """The metric a run's sweep is judged by, as gdexp.results.groups.monitor picks it: (column, mode)."""
    import pandas as pd

    from gdexp.results.groups import monitor

    return monitor(pd.DataFrame([{k: summary.get(k) for k in ("final_loss", "val_loss", "val_accuracy")}]))


def objective_name(metric: tuple[str, str]) -> str:
    """What Optuna is told of a run judged by `metric` (column, mode): 1 - a metric to maximize,
    log10 of one to minimize."""
    column, mode = metric
    return f"1 - {column}" if mode == "max" else f"log10({column})"


def objective(summary: dict, metric: tuple[str, str] | None = None) -> tuple[float | None, str]:
    """The value told to Optuna for a run's summary, and the objective's name. The value is None
    for a job without a descent result ('failed'), or without `metric` (the study's: one metric
    for every trial of a study; None = the summary's own, `judged_by`).

    >>> objective({"status": "converged", "final_loss": 1e-6})
    (-6.0, 'log10(final_loss)')
    >>> objective({"status": "max_iters", "final_loss": 1e-3, "val_loss": 0.1, "val_accuracy": 0.75})
    (0.25, '1 - val_accuracy')
    >>> objective({"status": "diverged", "final_loss": 3.0})
    (309.0, 'log10(final_loss)')
    >>> objective({"status": "converged", "final_loss": 1e-6}, ("val_accuracy", "max"))
    (None, '1 - val_accuracy')
    """
    column, mode = metric or judged_by(summary)
    name = objective_name((column, mode))
    if summary["status"] == DIVERGED:
        return DIVERGED_VALUE, name
    value = summary.get(column)
    if summary["status"] not in DESCENT_STATUSES or value is None or not math.isfinite(value):
        return None, name
    if mode == "max":
        return 1.0 - value, name
    return (math.log10(value) if value > 0 else ZERO_LOSS_VALUE), name


class OptunaSweeper(SearchSweeper):
    """Bayesian search (Optuna's TPE) minimizing `objective`: the metric best_lr is chosen by,
    1 - val_accuracy for a classifier with a validation part, else log10 of val_loss or of the
    final loss.

    Why log10: losses span many decades (1e-12 converged, 1e1 stalled).
    TPE splits trials by rank, so for it any increasing transform is the same;
    on a log scale the values Optuna stores and plots stay readable, and a
    sampler that models values (a GP) sees decades, not the few worst runs.
    A diverged run is told as a COMPLETE trial with DIVERGED_VALUE (309, above
    the log10 of any finite loss), so TPE puts it among the bad trials and
    samples away from its region; a FAIL trial would be left out of the model,
    and the sampler would keep proposing learning rates that blow up. Only a
    job that failed (its code raised: status 'failed') is told as FAIL.

    Args:
        n_trials: trials in all.
        batch_size: trials asked before any is told, launched as one batch.
            Pending trials count as bad (TPE's constant liar), so a batch
            spreads out instead of asking one point n times.
        seed: TPE's seed; the same sweep asks the same values.
        n_startup_trials: trials drawn at random before TPE models the rest.
        search: the space, `key: {low, high, log, step}` (ints if low and high
            are both ints) or `key: {choices: [...]}`.
        params: overrides for every trial. A plain value fixes the key (and
            takes it out of `search`); Hydra's sweep syntax searches it, like
            command-line arguments: `tag(log,interval(1e-4,1))` a float range
            (log-uniform with the tag), `a,b,c` choices, `range(1,5)` ints.
    """

    def __init__(self, n_trials: int = 32, batch_size: int = 8, seed: int = 0, n_startup_trials: int = 8,
                 search: Optional[Dict[str, Any]] = None, params: Optional[Dict[str, str]] = None) -> None:
        super().__init__(params)
        self.n_trials, self.batch_size, self.seed = n_trials, batch_size, seed
        self._metric: tuple[str, str] | None = None  # the study's, from its first result (_tell)
        self.n_startup_trials = n_startup_trials
        self.search = OmegaConf.to_container(search) if OmegaConf.is_config(search) else dict(search or {})
        self.space: dict = {}

    def _prepare(self, overrides: List[Override]) -> tuple[List[str], List[List[str]]]:
        try:
            import optuna  # noqa: F401
        except ImportError:
            raise ConfigError("hydra/sweeper", "optuna", "needs Optuna: pip install 'optuna>=5,<6'") from None
        for key, least in (("n_trials", 1), ("batch_size", 1), ("n_startup_trials", 0)):
            if getattr(self, key) < least:
                raise ConfigError(f"hydra.sweeper.{key}", getattr(self, key), f"must be >= {least}")
        # Sweep syntax searches a key, a plain value fixes it (and takes it out of `search`).
        self.space = {key: _distribution(f"hydra.sweeper.search.{key}", spec) for key, spec in self.search.items()}
        fixed = []
        for o in overrides:
            line = fixed_line(o)
            if line is None:
                self.space[o.key_or_group] = _distribution_of_override(o)
            else:
                self.space.pop(o.key_or_group, None)
                fixed.append(line)
        if not self.space:
            raise ConfigError("hydra.sweeper.search", {}, "nothing to search: give a range, e.g. "
                              "optimizer.lr='tag(log,interval(1e-4,1))'")
        self.searched = tuple(self.space)
        return fixed, [[*fixed, *_assign(point)] for point in _corners(self.space)]

    def _search(self, fixed: List[str]) -> Outcome:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # gdexp prints its own table
        sampler = optuna.samplers.TPESampler(seed=self.seed, n_startup_trials=self.n_startup_trials,
                                             constant_liar=True)
        # Kept beside the MLflow store, named by the parent run: optuna-dashboard and
        # optuna.visualization (and gdexp report) open it afterwards.
        storage, name = study_storage(self.config), env.get(env.PARENT_RUN)
        study = optuna.create_study(direction="minimize", sampler=sampler, storage=storage, study_name=name)
        # A run is deterministic: a config asked again is told its recorded result, not run again
        # (Optuna's FAQ for deterministic objectives); a finite space all run ends the search.
        size, recorded, reused = space_size(self.space), {}, 0
        while len(study.trials) < self.n_trials and len(recorded) < size:
            trials = [study.ask(self.space) for _ in range(min(self.batch_size, self.n_trials - len(study.trials)))]
            new = {}  # config -> the first trial of this batch that asks it, when no trial asked it before
            for t in trials:
                key = _config_key(t.params)
                if key not in recorded:
                    new.setdefault(key, t)
            for key, summary in zip(new, self._launch([[*fixed, *_assign(t.params)] for t in new.values()])):
                recorded[key] = summary
            for trial in trials:
                first = new.get(_config_key(trial.params)) is trial
                reused += not first
                self._tell(study, trial, recorded[_config_key(trial.params)], log=first)
        metrics, best = _results(study)
        report = [f"optuna: {len(study.trials)} trials: {metrics['optuna_complete']:g} complete, of which "
                  f"{metrics['optuna_diverged']:g} diverged (told as {DIVERGED_VALUE:g}), "
                  f"{metrics['optuna_fail']:g} failed"]
        if reused:
            report.append(f"optuna: {reused} trials asked a config already run: told its recorded result")
        if len(recorded) >= size and len(study.trials) < self.n_trials:
            report.append(f"optuna: every one of the search space's {size} configs has run: "
                          f"stopped after {len(study.trials)} of {self.n_trials} trials")
        if best:
            report.append(f"optuna: best trial {metrics['optuna_best_trial']:g}: " + " ".join(_assign(best))
                          + f" -> {self._objective_name}={metrics['optuna_best_value']:.4g}")
        settings = {"n_trials": self.n_trials, "batch_size": self.batch_size, "seed": self.seed,
                    "n_startup_trials": self.n_startup_trials, "objective": self._objective_name,
                    "diverged_value": DIVERGED_VALUE}
        return Outcome(metrics, params={f"optuna.{k}": v for k, v in settings.items()},
                       tags={**{f"gdexp.optuna_best.{k}": str(v) for k, v in best.items()},
                             "gdexp.optuna.storage": storage, "gdexp.optuna.study": name}, report=report,
                       error=None if best else "every trial diverged or failed: no best value")

    @property
    def _objective_name(self) -> str:
        """The study's objective; log10(final_loss) until a result tells its metric (or none does)."""
        return objective_name(self._metric or ("final_loss", "min"))

    def _tell(self, study, trial, summary: dict, log: bool = True) -> None:
        """Tell Optuna the result, and mark the run with its trial for the MLflow UI (`log`: the
        trial that ran it, not one told its recorded result)."""
        from optuna.trial import TrialState

        if self._metric is None and summary["status"] in DESCENT_STATUSES and summary["status"] != DIVERGED:
            # The study's one metric, from its first run with a result: a search over losses whose
            # runs are judged by different metrics (val_accuracy, final_loss) must not mix them.
            self._metric = judged_by(summary)
        value, name = objective(summary, self._metric)
        if value is None and summary["status"] in DESCENT_STATUSES:
            _log.warning(f"optuna: trial {trial.number} has no {self._metric[0]} (the study's objective, "
                        f"{name}): told as failed")
        state = TrialState.FAIL if value is None else TrialState.COMPLETE
        study.tell(trial, value, state=state)
        if log and summary.get("run_id") and summary["status"] in (*DESCENT_STATUSES, FAILED):  # a run in the store
            self._log_results(summary["run_id"], {} if value is None else {"optuna_value": value},
                      tags={"gdexp.optuna.trial": str(trial.number), "gdexp.optuna.state": state.name})


def space_size(space: dict) -> float:
    """How many configs a search space holds: math.inf unless every distribution is finite
    (choices, ints, floats with a step).

    >>> from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    >>> space_size({"a": CategoricalDistribution([0.1, 0.01]), "b": IntDistribution(1, 5, step=2)})
    6
    >>> space_size({"lr": FloatDistribution(1e-4, 1, log=True)})
    inf
    """
    size = 1
    for d in space.values():
        if hasattr(d, "choices"):
            size *= len(d.choices)
        elif getattr(d, "step", None) is not None:
            size *= int(round((d.high - d.low) / d.step)) + 1
        else:
            return math.inf
    return size


def _config_key(params: dict) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in params.items()))


def study_storage(config) -> str:
    """Where a sweep keeps its Optuna study: an RDB URL beside the MLflow store.

    `optuna.db` in the folder of a SQLite MLflow store; for a tracking server,
    in the sweep's folder (hydra.sweep.dir).
    """
    uri = resolve_uri(config.tracking.uri)
    if uri.startswith("sqlite:///"):
        folder = Path(uri[len("sqlite:///"):].split("?", 1)[0]).parent
    else:
        folder = Path(config.hydra.sweep.dir).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'optuna.db'}"


def _distribution(where: str, spec):
    """An Optuna distribution from `{low, high, log, step}` or `{choices: [...]}`; errors name `where`."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    try:
        if not isinstance(spec, dict):
            raise ValueError("must be {low, high, log, step} or {choices: [...]}")
        if set(spec) == {"choices"}:
            return CategoricalDistribution(list(spec["choices"]))
        unknown = set(spec) - {"low", "high", "log", "step"}
        if unknown or not {"low", "high"} <= set(spec):
            raise ValueError("needs low and high (optional: log, step), or choices")
        low, high, log, step = spec["low"], spec["high"], bool(spec.get("log", False)), spec.get("step")
        if all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high)):
            return IntDistribution(low, high, log=log, step=int(step or 1))
        return FloatDistribution(float(low), float(high), log=log, step=None if step is None else float(step))
    except (TypeError, ValueError) as exc:
        raise ConfigError(where, spec, str(exc)) from None


def _distribution_of_override(o: Override):
    """Hydra's sweep syntax: interval() floats (tag log: log-uniform), range() ints, a,b,c choices."""
    sweep = o.value()
    if isinstance(sweep, IntervalSweep):
        spec = {"low": sweep.start, "high": sweep.end, "log": "log" in sweep.tags}
    elif isinstance(sweep, RangeSweep) and all(isinstance(v, int) for v in (sweep.start, sweep.stop, sweep.step)):
        values = list(o.sweep_iterator())
        spec = {"low": values[0], "high": values[-1], "step": sweep.step} if values else {"choices": []}
    elif isinstance(sweep, (ChoiceSweep, RangeSweep)):
        spec = {"choices": list(o.sweep_iterator())}
    else:
        raise ConfigError(o.key_or_group, o.input_line.split("=", 1)[1], "cannot be searched by Optuna")
    return _distribution(o.key_or_group, spec)


def _corners(space: dict) -> list[dict]:
    """Points that together use each range's ends and every choice: enough to validate the space."""
    def ends(d):
        return list(d.choices) if hasattr(d, "choices") else [d.low, d.high]

    base = {key: ends(d)[0] for key, d in space.items()}
    return [{**base, key: value} for key, d in space.items() for value in ends(d)]


def _assign(params: dict) -> list[str]:
    """key=value overrides; floats with 12 significant digits, as grid values."""
    def text(v):
        if isinstance(v, bool) or v is None:
            return "null" if v is None else str(v).lower()
        return clean(v) if isinstance(v, float) else str(v)

    return [f"{key}={text(value)}" for key, value in params.items()]


def _results(study) -> tuple[dict, dict]:
    """Parent metrics (trial counts by outcome, best value, numeric best params), and best params."""
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    finite = [t for t in complete if t.value < DIVERGED_VALUE]
    metrics = {
        "optuna_complete": float(len(complete)),
        "optuna_diverged": float(len(complete) - len(finite)),  # told COMPLETE at DIVERGED_VALUE
        "optuna_fail": float(len(study.get_trials(deepcopy=False, states=(TrialState.FAIL,)))),
    }
    if not finite:
        return metrics, {}
    best = min(finite, key=lambda t: t.value)
    params = {k: float(clean(v)) if isinstance(v, float) else v for k, v in best.params.items()}
    metrics["optuna_best_value"] = best.value
    metrics["optuna_best_trial"] = float(best.number)
    metrics.update({f"optuna_best.{k}": float(v) for k, v in params.items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool)})
    return metrics, params
