"""Successive halving inside a batch (stopping.prune=halving): decisions, chunking, records, rerun."""
from __future__ import annotations

import types

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from gdexp.specs.batch import chunks, execute
from gdexp.core.pruning import Halving
from gdexp.specs.run_spec import build_spec
from gdexp.results.summary import summarize


def _quadratic(lr: float, *, prune: str = "halving", maxiter: int = 500, eigenvalues=(1.0,), seed: int = 0,
               eta: float = 3.0, min_steps: int = 100) -> dict:
    return {"loss": {"_target_": "gdexp.core.losses.Quadratic", "eigenvalues": list(eigenvalues)},
            "optimizer": {"_target_": "gdexp.core.optimizers.gd", "lr": float(lr)},
            "stopping": {"maxiter": maxiter, "gtol": 0.0, "prune": prune, "prune_eta": eta,
                         "prune_min_steps": min_steps},
            "init": [1.0] * len(eigenvalues), "seed": seed}


def test_a_rung_keeps_the_best_third_of_each_group_by_the_mean_of_its_seeds():
    # Two groups. Group 0: six learning rates (units 0-5), unit 1 with two seeds (rows 1, 6)
    # whose mean is 2.5; unit 4 diverged in one seed (row 7): never kept. floor(6 / 3) = 2 kept:
    # the two lowest means among the eligible, 1.0 (unit 3) and 2.5 (unit 1).
    # Group 1: two units, floor(2 / 3) = 0 -> at least one is kept: the better, unit 9.
    # Ties go to the smaller learning rate: units 10 and 11 tie (group 2), 10 has the smaller lr.
    group = np.array([0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 2])
    unit = np.array([0, 1, 2, 3, 4, 5, 1, 4, 8, 9, 10, 11])
    lr = np.array([1, 2, 3, 4, 5, 6, 2, 5, 1, 2, 0.1, 0.2])
    value = np.array([4.0, 2.0, 3.5, 1.0, 0.1, 5.0, 3.0, np.nan, 7.0, 6.0, 1.0, 1.0])
    running = np.array([True] * 7 + [False] + [True] * 4)
    spoiled = np.zeros(12, bool)
    spoiled[7] = True
    keep = Halving(3.0, 100, group, unit, lr).survivors(value, False, running, spoiled)
    assert np.flatnonzero(keep).tolist() == [1, 3, 6, 9, 10]
    # val_accuracy: higher is better, so the order flips (unit 4 still never kept).
    keep = Halving(3.0, 100, group, unit, lr).survivors(value, True, running, spoiled)
    assert np.flatnonzero(keep).tolist() == [0, 5, 8, 10]


def test_rungs_are_min_steps_times_powers_of_eta():
    h = Halving(2.0, 50, *np.zeros((3, 1)))
    assert h.rungs(1000) == [50, 100, 200, 400, 800]
    assert Halving(3.0, 100, *np.zeros((3, 1))).rungs(100) == []


def test_the_descent_prunes_at_the_rungs_as_the_closed_form_says():
    # GD on f = x^2 / 2 from x = 1: loss after t steps = (1 - lr)^(2t) / 2, so a larger lr
    # (below 1) is better at every step. Nine lrs: at step 100 the best 3 (0.07, 0.08, 0.09)
    # go on, at step 300 the best 1 (0.09), which runs to maxiter = 500.
    lrs = [0.01 * k for k in range(1, 10)]
    results = execute([build_spec(_quadratic(lr)) for lr in lrs])
    assert [r.status for r in results] == ["pruned"] * 6 + ["pruned"] * 2 + ["max_iters"]
    assert [r.iterations for r in results] == [100] * 6 + [300] * 2 + [500]
    assert [r.pruned_step for r in results] == [100] * 6 + [300] * 2 + [None]
    assert {r.stop_reason for r in results[:8]} == {"halving"}
    for lr, r in zip(lrs, results):
        t = np.arange(r.iterations + 1)
        np.testing.assert_allclose(r.loss, (1 - lr) ** (2 * t) / 2, rtol=1e-12)
        np.testing.assert_array_equal(r.x, r.path[-1])


def test_a_diverged_learning_rate_is_never_kept_and_off_changes_nothing():
    # lr 2.5 > 2/lambda diverges before the first rung; of the 3 others one is kept.
    lrs = [0.1, 0.5, 1.0, 2.5]
    pruned = execute([build_spec(_quadratic(lr)) for lr in lrs])
    assert [r.status for r in pruned] == ["pruned", "pruned", "max_iters", "diverged"]
    plain = execute([build_spec(_quadratic(lr, prune="none")) for lr in lrs])
    for a, b in zip(plain, pruned):  # the curves so far are the unpruned ones
        np.testing.assert_array_equal(a.loss[:b.iterations + 1], b.loss)


def test_decisions_do_not_depend_on_chunking():
    # Two groups (two Hessians) x 3 seeds x 12 lrs, log-spaced to the edge of stability.
    specs = [build_spec(_quadratic(lr, eigenvalues=ev, seed=seed, maxiter=400, min_steps=20, eta=2.0))
             for ev in ((1.0, 10.0), (1.0, 30.0)) for lr in np.geomspace(1e-3, 0.25, 12) for seed in range(3)]
    whole = execute(specs)
    assert len({r.status for r in whole}) > 1
    budget = 3 * specs[0].memory_bytes  # room for 3 rows: far less than a group
    parts = list(chunks(specs, budget=budget))
    assert len(parts) == 2  # one chunk per group, never a group cut
    for rows, outcomes in parts:
        assert len({str(specs[i].config["loss"]["eigenvalues"]) for i in rows}) == 1
        for i, outcome in zip(rows, outcomes):
            a, b = whole[i], outcome
            assert (a.status, a.iterations) == (b.status, b.iterations)
            np.testing.assert_array_equal(a.loss, b.loss)
    # The seeds of a learning rate are kept or pruned together.
    by_lr = {}
    for spec, r in zip(specs, whole):
        by_lr.setdefault((str(spec.config["loss"]["eigenvalues"]), spec.lr), set()).add((r.status, r.iterations))
    assert all(len(fates) == 1 for fates in by_lr.values())


def test_the_summary_answers_among_finished_runs_and_lists_the_pruned():
    runs = pd.DataFrame({
        "lr": [0.01, 0.02, 0.04, 0.08, 0.16], "optimizer.lr": [0.01, 0.02, 0.04, 0.08, 0.16], "seed": 0,
        "run_name": list("abcde"), "iterations": [100, 100, 1000, 300, 40],
        "status": ["pruned", "pruned", "max_iters", "pruned", "diverged"],
        "diverged": [False, False, False, False, True], "diverged_step": [None, None, None, None, 40],
        "pruned_step": [100, 100, None, 300, None],
        "final_loss": [0.5, 0.4, 0.3, 0.001, 1e9]})
    s = summarize(runs)
    row = s.answers.iloc[0]
    # 0.08 had the lowest loss when pruned, but it never finished: neither best nor stable.
    assert (row["best_lr"], row["max_stable_lr"], row["min_diverged_lr"]) == (0.04, 0.04, 0.16)
    assert (row["pruned"], row["pruned_above"]) == (3, 1)
    assert s.counts()["pruned"] == 3
    assert s.pruned()[["lr", "pruned_step"]].values.tolist() == [[0.01, 100], [0.02, 100], [0.08, 300]]
    text = s.text()
    assert "max_stable_lr=0.04 (among finished runs; 1 pruned learning rates above it: unknown)" in text
    assert "2 at step 100 (lr 0.01..0.02), 1 at step 300 (lr 0.08..0.08)" in text


@pytest.mark.parametrize("key, value", [("stopping.prune", "asha"), ("stopping.prune_eta", "1"),
                                        ("stopping.prune_min_steps", "0")])
def test_bad_pruning_settings_fail_in_one_line(gdexp, key, value):
    code, _, err = gdexp("loss=quadratic", f"{key}={value}")
    line = err.strip().splitlines()[-1]
    assert code == 2 and line.startswith(f"gdexp: error: {key}=") and value in line


def test_a_pruned_sweep_is_recorded_and_reruns_to_its_prune_step(gdexp, store):
    code, out, _ = gdexp("-m", "loss=quadratic", "loss.eigenvalues=[1]", "init=[1.0]",
                         "optimizer.lr=0.01,0.02,0.03,0.04,0.05,0.06", "stopping.maxiter=300",
                         "stopping.gtol=0", "stopping.prune=halving", "stopping.prune_min_steps=50")
    assert code == 0, out
    assert "4 at step 50 (lr 0.01..0.04), 1 at step 150 (lr 0.05..0.05)" in out
    cl = MlflowClient(store)
    children = [r for r in cl.search_runs(["1"]) if "mlflow.parentRunId" in r.data.tags]
    by_lr = {float(r.data.params["optimizer.lr"]): r for r in children}
    assert {lr: r.data.tags["gdexp.status"] for lr, r in by_lr.items()} == {
        0.01: "pruned", 0.02: "pruned", 0.03: "pruned", 0.04: "pruned", 0.05: "pruned", 0.06: "max_iters"}
    assert by_lr[0.05].data.tags["gdexp.pruned_step"] == "150"
    assert by_lr[0.05].data.tags["gdexp.stop_reason"] == "halving"
    assert "gdexp.pruned_step" not in by_lr[0.06].data.tags
    assert by_lr[0.05].info.status == "FINISHED" and by_lr[0.05].data.metrics["iterations"] == 150
    code, out, _ = gdexp("rerun", by_lr[0.05].info.run_id, by_lr[0.01].info.run_id)
    assert code == 0, out
    assert "identical (151 steps)" in out and "identical (51 steps)" in out


def test_a_pruned_batch_stays_one_task_on_ray_and_submitit(compose):
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from gdexp.hydra.launchers.groups import descent_groups
    from gdexp.hydra.paths import conf_dir

    master = compose(raw=True)
    GlobalHydra.instance().clear()
    jobs = [["loss=booth", f"optimizer.lr={lr}", "stopping.prune=halving"] for lr in (0.1, 0.2, 0.3)]
    with initialize_config_dir(config_dir=str(conf_dir()), version_base=None):
        loader = GlobalHydra.instance().config_loader()
        assert descent_groups(types.SimpleNamespace(), loader, master, jobs, 0, jobs_per_task=2) == [(0, jobs)]
