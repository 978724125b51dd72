"""loss=torch through gdexp's other workflows: lr_find, Optuna, the range test and `gdexp resume`, on a
small tanh network (test_torch_module's NET: 30-8-1, mse, float64), the real CLI in-process and a real
SQLite store; each run's numbers checked against the same training in torch alone. (Ray: test_scaleout.py,
beside the Ray head it starts.)"""
from __future__ import annotations

import math
import os
import signal

import numpy as np
import pytest
from mlflow import MlflowClient

torch = pytest.importorskip("torch", reason="loss=torch needs the torch extra (CI installs the CPU wheel)")

from gdexp.hydra.sweepers.optuna import DIVERGED_VALUE  # noqa: E402
from gdexp.results.range_test import ramp_lrs, suggest_lr  # noqa: E402
from fault_tools import census, on_each_write  # noqa: E402
from test_lr_find import sweep_of  # noqa: E402
from test_lr_range_test import stop_step  # noqa: E402
from test_torch_module import mynet  # noqa: E402,F401 - the fixture: mynet/net.py in the start folder

# Full-batch GD on the 30-8-1 tanh net, mse on 80 points: stable up to lr ~0.62 from seed 0's start.
NET = ["loss=torch", "loss.model=mynet.net.reg_model", "loss.data=mynet.net.regression", "loss.criterion=mse",
       "loss.dtype=float64", "seed=0"]
DIVERGENCE_FACTOR = 1e4  # conf/stopping: diverged once loss > factor x |initial loss|


def torch_gd(lrs, early_stop_threshold: float = 0.0) -> np.ndarray:
    """Plain full-batch GD in torch alone, from `torch.manual_seed(0); reg_model()`: the loss before
    each update, update k with lrs[k], up to the step gdexp's stopping rules stop at (the loss past
    DIVERGENCE_FACTOR x |its first|, or past early_stop_threshold x its best before)."""
    from mynet import net

    torch.manual_seed(0)
    m = net.reg_model().double()
    X, y = net.regression()
    losses = []
    for k in range(len(lrs) + 1):
        m.zero_grad()
        loss = torch.nn.functional.mse_loss(m(X), y)
        losses.append(loss.item())
        if (k == len(lrs) or not math.isfinite(losses[-1]) or losses[-1] > DIVERGENCE_FACTOR * abs(losses[0])
                or (early_stop_threshold and k and losses[-1] > early_stop_threshold * min(losses[:-1]))):
            break
        loss.backward()
        with torch.no_grad():
            for p in m.parameters():
                p -= lrs[k] * p.grad
    return np.array(losses)


def check_torch_runs(children):
    """Every child a loss=torch run of the user's net, its code checksummed."""
    from gdexp.specs.targets import source_sha256
    from mynet import net

    for r in children:
        assert r.info.status == "FINISHED"
        assert r.data.params["loss.name"] == "torch" and r.data.params["loss.model"] == "mynet.net.reg_model"
        assert r.data.tags["gdexp.source_sha256"] == source_sha256(net.reg_model)


def lr_of(run) -> float:
    return float(run.data.params["optimizer.lr"])


def loss_curve(uri: str, run) -> list[float]:
    """A run's logged loss, step by step."""
    return [h.value for h in sorted(MlflowClient(uri).get_metric_history(run.info.run_id, "loss"),
                                    key=lambda h: h.step)]


def test_lr_find_brackets_the_nets_stability_limit(gdexp, store, mynet):
    code, out, err = gdexp("+sweep=lr_find", *NET, "stopping.maxiter=200", "hydra.sweeper.start=0.1",
                           "hydra.sweeper.rtol=0.2")
    assert code == 0, err
    parent, children = sweep_of(store)
    check_torch_runs(children)
    m = parent.data.metrics
    stable = [r for r in children if r.data.tags["gdexp.status"] != "diverged"]
    diverged = [r for r in children if r.data.tags["gdexp.status"] == "diverged"]
    assert m["probes"] == m["runs"] == len(children) and m["failed"] == 0 and stable and diverged
    assert len({lr_of(r) for r in children}) == len(children)  # no rate probed twice
    assert m["max_stable_lr"] == max(map(lr_of, stable)) and m["min_diverged_lr"] == min(map(lr_of, diverged))
    # every stable probe below every diverged one, the bracket to rtol
    assert m["max_stable_lr"] < m["min_diverged_lr"] <= 1.2 * m["max_stable_lr"]
    assert f"max_stable_lr={m['max_stable_lr']:g}" in out
    # Each probe is the real training: torch's own GD loop diverges at the same step, or ends at the same loss.
    for r in children:
        ref = torch_gd([lr_of(r)] * 200)
        if r in diverged:
            assert int(r.data.tags["gdexp.diverged_step"]) == len(ref) - 1 < 200
        else:
            assert len(ref) == 201
            assert r.data.metrics["final_loss"] == pytest.approx(ref[-1], rel=1e-9)


def test_optuna_trials_are_children_and_the_best_is_the_lowest_final_loss(gdexp, store, mynet):
    import optuna

    code, out, err = gdexp("+sweep=lr_optuna", *NET, "stopping.maxiter=200", "hydra.sweeper.n_trials=8",
                           "hydra.sweeper.batch_size=4", "hydra.sweeper.n_startup_trials=4")
    assert code == 0, err
    parent, children = sweep_of(store)
    check_torch_runs(children)
    children.sort(key=lambda r: int(r.data.tags["gdexp.optuna.trial"]))
    m = parent.data.metrics
    assert [int(r.data.tags["gdexp.optuna.trial"]) for r in children] == list(range(8))
    assert {r.data.tags["gdexp.optuna.state"] for r in children} == {"COMPLETE"}
    diverged = [r for r in children if r.data.tags["gdexp.status"] == "diverged"]
    assert m["runs"] == m["optuna_complete"] == 8 and m["optuna_fail"] == 0
    assert m["optuna_diverged"] == m["diverged"] == len(diverged)
    # The objective: log10 of the final loss, 309 for a diverged run; the best is the lowest final loss.
    for r in children:
        assert r.data.metrics["optuna_value"] == (DIVERGED_VALUE if r in diverged else
                                                  pytest.approx(math.log10(r.data.metrics["final_loss"]), rel=1e-12))
    best = min((r for r in children if r not in diverged), key=lambda r: r.data.metrics["final_loss"])
    assert m["optuna_best_value"] == min(r.data.metrics["optuna_value"] for r in children) \
        == best.data.metrics["optuna_value"]
    assert m["optuna_best.optimizer.lr"] == lr_of(best) == m["best_lr"]
    # The study Optuna kept holds the same trials and values.
    study = optuna.load_study(study_name=parent.data.tags["gdexp.optuna.study"],
                              storage=parent.data.tags["gdexp.optuna.storage"])
    assert [t.value for t in study.trials] == [r.data.metrics["optuna_value"] for r in children]
    assert [t.params["optimizer.lr"] for t in study.trials] == pytest.approx([lr_of(r) for r in children], rel=1e-9)
    # The best trial is the real training: torch's own loop ends at its final loss.
    assert best.data.metrics["final_loss"] == pytest.approx(torch_gd([lr_of(best)] * 200)[-1], rel=1e-9)


def test_the_range_test_stops_and_suggests_as_torchs_own_ramp(gdexp, store, mynet):
    code, out, err = gdexp("+sweep=lr_range_test", *NET, "stopping.maxiter=200", "hydra.sweeper.points=6",
                           "hydra.sweeper.start_lr=1e-4", "hydra.sweeper.end_lr=10")
    assert code == 0, err
    parent, children = sweep_of(store)
    check_torch_runs(children)
    (test,) = [r for r in children if r.data.tags.get("gdexp.lr_range_test") == "true"]
    grid = [r for r in children if r is not test]
    assert sorted(map(lr_of, grid)) == pytest.approx([1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0], rel=1e-12)
    # torch's own GD with the ramp's rates, stopped once the loss passes 4x its best before
    lrs = ramp_lrs(1e-4, 10.0, 100, 99)
    ref = torch_gd(lrs, early_stop_threshold=4.0)
    k = stop_step(ref, 4.0, 99)
    assert len(ref) == k + 1 < 100  # it stopped inside the ramp
    assert test.data.metrics["iterations"] == k
    np.testing.assert_allclose(loss_curve(store, test), ref, rtol=1e-9)
    suggested = suggest_lr(ref, lrs[:k + 1])
    assert test.data.metrics["suggested_lr"] == pytest.approx(suggested, rel=1e-12)
    # The parent: the grid's answers, and the suggestion against them.
    stable = [r for r in grid if r.data.tags["gdexp.status"] != "diverged"]
    best = min(stable, key=lambda r: r.data.metrics["final_loss"])
    m = parent.data.metrics
    assert m["runs"] == 6 and m["max_stable_lr"] == max(map(lr_of, stable)) and m["best_lr"] == lr_of(best)
    assert m["suggested_lr"] == test.data.metrics["suggested_lr"]
    assert m["suggested_to_best_lr"] == pytest.approx(suggested / m["best_lr"], rel=1e-12)
    assert m["suggested_to_max_stable_lr"] == pytest.approx(suggested / m["max_stable_lr"], rel=1e-12)


def test_resume_of_an_interrupted_torch_sweep_runs_only_what_is_missing(gdexp, store, mynet, tmp_path, monkeypatch):
    """Ctrl-C lands as the second of four runs (one a batch) is written: two recorded, the sweep KILLED.
    `gdexp resume` descends the other two, equal to the same runs of a sweep never interrupted."""
    sweep = ["-m", *NET, "optimizer.lr=0.01,0.03,0.1,0.3", "stopping.maxiter=100"]
    sweep_dir = tmp_path / "sweep"

    def interrupt(k):
        if k == 2:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.MonkeyPatch.context() as fault:
        on_each_write(fault, "fast", None, interrupt)
        code, out, err = gdexp(*sweep, "hydra.sweeper.max_batch_size=1", f"hydra.sweep.dir={sweep_dir}")
    assert code == 130, err
    assert f"gdexp: interrupted: 2 of 4 runs recorded; to finish: gdexp resume {sweep_dir}" in err
    stopped = census(store, sweep_dir)
    assert (stopped["finished"], stopped["running"], stopped["parent"]) == (2, 0, "KILLED"), stopped
    _, before = sweep_of(store)
    kept = {r.info.run_id for r in before if r.info.status == "FINISHED"}

    code, out, err = gdexp("resume", str(sweep_dir))
    assert code == 0, err
    assert "2 to go, 0 stale runs closed (2 of 4 planned runs FINISHED)" in out, out
    assert out.count("Launching 1 jobs") == 2  # only the two missing runs, one a batch as planned
    after = census(store, sweep_dir)
    assert (after["finished"], after["lost"], after["duplicated"], after["running"], after["parent"]) \
        == (4, 0, 0, 0, "FINISHED"), after
    _, children = sweep_of(store)
    done = {lr_of(r): r for r in children if r.info.status == "FINISHED"}
    assert len(done) == 4 and sum(r.info.run_id not in kept for r in done.values()) == 2
    check_torch_runs(done.values())

    # The same sweep, never interrupted (all four in one batch), in another store.
    straight_uri = f"sqlite:///{tmp_path / 'straight.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", straight_uri)
    code, _, err = gdexp(*sweep, f"hydra.sweep.dir={tmp_path / 'straight'}")
    assert code == 0, err
    _, straight = sweep_of(straight_uri)
    straight = {lr_of(r): r for r in straight}
    assert straight.keys() == done.keys()
    for lr, r in done.items():
        ref = straight[lr]
        assert r.data.tags["gdexp.config_hash"] == ref.data.tags["gdexp.config_hash"]
        assert r.data.metrics["final_loss"] == pytest.approx(ref.data.metrics["final_loss"], rel=1e-12, abs=0)
        curve = loss_curve(store, r)
        assert len(curve) == 101
        np.testing.assert_allclose(curve, loss_curve(straight_uri, ref), rtol=1e-12, atol=0)
