"""lr_optuna on a finite search space: a config asked again is told its recorded result (no second
descent of a deterministic run), and the search stops with one line once every config has run."""
from __future__ import annotations

from cli_runner import runs_of


def test_a_finite_space_runs_each_config_once_and_stops_when_exhausted(gdexp, store):
    import optuna

    code, out, err = gdexp("+sweep=lr_optuna", "loss=quadratic", "stopping.maxiter=50",
                           "optimizer.lr=0.001,0.01,0.1", "hydra.sweeper.n_trials=16", "hydra.sweeper.batch_size=4")
    assert code == 0, err
    _, children, (parent,) = runs_of(store)
    lrs = sorted(float(r.data.params["optimizer.lr"]) for r in children)
    assert lrs == [0.001, 0.01, 0.1]  # one run per config, however often TPE asked it
    lines = [line for line in out.splitlines() if "search space" in line]
    assert len(lines) == 1 and "every one of the search space's 3 configs has run: stopped after" in lines[0]
    study = optuna.load_study(study_name=parent.info.run_id, storage=parent.data.tags["gdexp.optuna.storage"])
    assert len(study.trials) < 16
    by_lr = {}
    for t in study.trials:  # a repeated config was told the value of its one run
        by_lr.setdefault(t.params["optimizer.lr"], set()).add(t.value)
    assert all(len(values) == 1 for values in by_lr.values()) and len(by_lr) == 3
