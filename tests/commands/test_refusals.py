"""Issue 9, what gdexp refuses or accepts on its command line, each defect by its kind:
keys nothing reads (3), a key given twice (7), keys of the swept options (11), grids (6, 12),
gdexp's own --help and --info (18), sweepers that need no extra (1).

Every refusal is one line `gdexp: error: KEY=VALUE: reason`, exit status 2, and no MLflow run.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from gdexp.commands.exits import EXIT_INVALID_INPUT
from gdexp.core.errors import ConfigError
from gdexp.hydra.grids import expand


def runs_in(uri: str) -> list:
    cl = MlflowClient(uri)
    return cl.search_runs([e.experiment_id for e in cl.search_experiments()], max_results=1000)


def assert_refused(gdexp, store, args, named: str, *reasons: str) -> str:
    """gdexp ARGS exits 2 with one error line naming `named` and each of `reasons`; no run exists."""
    code, out, err = gdexp(*args)
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("gdexp: warning: ")]
    assert code == EXIT_INVALID_INPUT, (args, code, err)
    assert len(lines) == 1 and lines[0].startswith(f"gdexp: error: {named}"), (args, err)
    for reason in reasons:
        assert reason in lines[0], (args, reason, lines[0])
    assert "Traceback" not in err + out
    assert not Path(store.removeprefix("sqlite:///")).exists()  # no store, so no run (not even a parent)
    return lines[0]


# --- 3: a key that nothing reads ----------------------------------------------------------------
# (arguments, the key the error names, a valid key the line must list). Hydra's own hint after a
# misspelt key is `+key=...`, so the + forms matter as much as the typos.
UNREAD = [
    (["+budget.max_iter=5"], "budget.max_iter", "stopping.maxiter"),
    (["+budget.batch_size=32"], "budget.batch_size", "stopping.maxiter"),
    (["+budget.foo=1"], "budget.foo", "stopping.gtol"),
    (["budget.max_iter=5"], "budget.max_iter", "stopping.maxiter"),
    (["+lossx=3"], "lossx", "optimizer"),
    (["lossx=3"], "lossx", "optimizer"),
    (["+seed2=1"], "seed2", "seed"),
    (["loss=quadratic", "+loss.foo=1"], "loss.foo", "eigenvalues"),
    (["loss=quadratic", "loss.eigenvalue=[1,2]"], "loss.eigenvalue", "eigenvalues"),
    (["+optimizer.foo=1"], "optimizer.foo", "lr"),
    (["optimizer.lrr=0.1"], "optimizer.lrr", "lr"),
    (["optimizer=adam", "optimizer.beta=0.9"], "optimizer.beta", "beta1"),
    (["schedule=step", "+schedule.foo=1"], "schedule.foo", "step_size"),
    (["schedule=step", "schedule.gama=0.5"], "schedule.gama", "gamma"),
    (["schedule.foo=1"], "schedule.foo", "valid keys of schedule=constant: none"),
    (["+stopping.foo=1"], "stopping.foo", "maxiter"),
    (["stopping.maxiters=3"], "stopping.maxiters", "maxiter"),
    (["+tracking.bar=1"], "tracking.bar", "curve_points"),
    (["tracking.urii=x"], "tracking.urii", "uri"),
]


@pytest.mark.parametrize("args, key, listed", UNREAD, ids=[" ".join(u[0]) for u in UNREAD])
def test_a_key_nothing_reads_is_refused_listing_the_valid_keys(gdexp, store, args, key, listed):
    line = assert_refused(gdexp, store, args, key, listed)
    assert "valid keys" in line or "valid top-level keys" in line


def test_an_unread_key_in_a_sweep_is_refused_before_any_run(gdexp, store):
    assert_refused(gdexp, store, ["-m", "loss=booth", "optimizer.lr=0.01,0.1", "+loss.foo=1"], "loss.foo", "valid keys")
    assert_refused(gdexp, store, ["-m", "optimizer.lr=0.01,0.1", "+budget.max_iter=5"], "budget.max_iter")


def test_the_python_api_refuses_an_unread_key_too(store):
    import gdexp

    with pytest.raises(ConfigError, match="budget.max_iter.*stopping.maxiter"):
        gdexp.run(["+budget.max_iter=5"])
    with pytest.raises(ConfigError, match="lossx"):
        gdexp.sweep(["optimizer.lr=0.1,0.2", "+lossx=3"])
    assert runs_in(store) == []


# --- 7: a key given twice ------------------------------------------------------------------------
TWICE = [
    ["-m", "optimizer.lr=0.001,0.01", "optimizer.lr=0.1,0.2"],
    ["optimizer.lr=0.1", "optimizer.lr=0.2"],
    ["-m", "optimizer=gd", "optimizer=adam,gd"],
    ["+seed=1", "seed=2"],
    ["loss=quadratic", "loss.eigenvalues=[1,2]", "loss.eigenvalues=[3,4]"],
    ["budget.max_iters=5", "stopping.maxiter=6"],   # the same key under its old and new name
    ["-m", "optimizer.lr=logspace(1e-3,1e-1,3)", "optimizer.lr=range(0.1,0.3,0.1)"],
    ["+sweep=lr_grid", "optimizer.lr=0.1", "optimizer.lr=0.2"],
]


@pytest.mark.parametrize("args", TWICE, ids=[" ".join(t) for t in TWICE])
def test_a_key_given_twice_is_refused(gdexp, store, args):
    key = args[-1].partition("=")[0].lstrip("+")
    assert_refused(gdexp, store, args, key, "given twice")


# --- 11: keys that only the swept options have ---------------------------------------------------
def test_a_key_of_the_swept_options_is_checked_against_each_job(gdexp, store):
    code, _, err = gdexp("-m", "loss=booth", "optimizer=momentum,nesterov", "optimizer.momentum=0.5",
                         "optimizer.lr=0.01,0.02", "stopping.maxiter=20")
    assert code == 0, err
    code, _, err = gdexp("-m", "loss=booth", "schedule=cosine,warmup_cosine", "schedule.eta_min=0.0001",
                         "stopping.maxiter=200")
    assert code == 0, err
    runs = [r for r in runs_in(store) if "optimizer.lr" in r.data.params]
    momentum = [r for r in runs if r.data.params["optimizer.name"] in ("momentum", "nesterov")]
    assert len(momentum) == 4 and {r.data.params["optimizer.momentum"] for r in momentum} == {"0.5"}
    scheduled = [r for r in runs if r.data.params["schedule.name"] != "constant"]
    assert sorted(r.data.params["schedule.name"] for r in scheduled) == ["cosine", "warmup_cosine"]
    assert {r.data.params["schedule.eta_min"] for r in scheduled} == {"0.0001"}


LACKING = [
    (["-m", "optimizer=momentum,gd", "optimizer.momentum=0.5"], "optimizer.momentum", "optimizer=gd: lr, weight_decay"),
    (["-m", "schedule=cosine,step", "schedule.eta_min=0.1"], "schedule.eta_min", "schedule=step: step_size, gamma"),
    (["-m", "loss=quadratic,booth", "loss.eigenvalues=[1,2]"], "loss.eigenvalues", "loss=booth: none"),
]


@pytest.mark.parametrize("args, key, keys", LACKING, ids=[a[1] for a in LACKING])
def test_a_swept_option_that_lacks_the_key_is_named(gdexp, store, args, key, keys):
    assert_refused(gdexp, store, args, key, f"not a config key; valid keys of {keys}")


# --- 6 and 12: grids -----------------------------------------------------------------------------
GRID_ERRORS = [
    # (value of optimizer.lr, what the line must say)
    ("logspace(1e-4,1,0)", "whole number >= 1"),
    ("logspace(1e-4,1,2.7)", "whole number >= 1, got 2.7"),
    ("linspace(0.1,1,2.5)", "whole number >= 1"),
    ("logspace(1e-3,1e-1,-1)", "whole number >= 1"),
    ("logspace(0,1,3)", "geomspace"),            # numpy's exponents: say what gdexp's logspace takes
    ("logspace(-4,0,5)", "not numpy logspace's exponents"),
    ("logspace(1e-4,1)", "takes 3 numbers"),
    ("linspace(1,2)", "takes 3 numbers"),
    ("logspace()", "takes 3 numbers"),
    ("range(0.1)", "takes 2 or 3 numbers"),
    ("range(0.5,0.1,0.1)", "is empty"),
    ("range(0.1,0.5,0)", "must not be 0"),
    ("logspace(a,1,3)", "must be numbers"),
    ("logspace(1e-4,inf,3)", "finite"),
    ("linspace(0,1,nan)", "finite"),
    ("linspace(0.1,1,1e7)", "at most 1,000,000"),
    ("range(0.5,1e9,0.5)", "at most 1,000,000"),
    ("shuffle(logspace(1e-4,1,0))", "whole number >= 1"),
    ("sort(range(0.5,0.1,0.1),reverse=true)", "is empty"),
    ("logspace(1e-3,1e-1,3", "cannot be parsed"),
    ("interval(0.001,0.1)", "lr_optuna"),
]


@pytest.mark.parametrize("grid, reason", GRID_ERRORS, ids=[g[0] for g in GRID_ERRORS])
def test_a_grid_that_cannot_be_made_is_one_line(gdexp, store, grid, reason):
    assert_refused(gdexp, store, ["-m", "loss=booth", f"optimizer.lr={grid}"], "optimizer.lr", reason)


INT_GRID_ERRORS = [("range(0,3,0)", "must not be 0"), ("range(5,1)", "is empty"), ("range(1,2,3,4)", "2 or 3 numbers")]


@pytest.mark.parametrize("grid, reason", INT_GRID_ERRORS, ids=[g[0] for g in INT_GRID_ERRORS])
def test_an_integer_range_that_cannot_be_made_is_one_line(gdexp, store, grid, reason):
    # Integer ranges go to Hydra, whose range(0,3,0) is a ValueError traceback and range(5,1) no job at all.
    assert_refused(gdexp, store, ["-m", "loss=booth", f"stopping.maxiter={grid}"], "stopping.maxiter", reason)


def test_a_grid_error_in_a_sweep_file_is_one_line(gdexp, store, tmp_path):
    (tmp_path / "sweeps").mkdir()
    (tmp_path / "sweeps" / "bad_grid.yaml").write_text(
        "# A grid in numpy's exponents.\n# @package _global_\nhydra:\n  mode: MULTIRUN\n"
        "  sweeper:\n    params:\n      optimizer.lr: logspace(-4,0,5)\n")
    assert_refused(gdexp, store, ["+sweep=bad_grid"], "optimizer.lr", "geomspace")


EXPANDED = [
    # Hydra's own sort(range(1.3,0,-0.5)) runs 0.5, 1, 1.5; the range is 1.3, 0.8, 0.3.
    ("optimizer.lr=sort(range(1.3,0,-0.5))", "optimizer.lr=sort(1.3,0.8,0.3)"),
    ("optimizer.lr=shuffle(range(0.1,0.4,0.1))", "optimizer.lr=shuffle(0.1,0.2,0.3)"),
    ("optimizer.lr=sort(logspace(1e-3,1e-1,3),reverse=true)", "optimizer.lr=sort(0.001,0.01,0.1,reverse=true)"),
    ("optimizer.lr=sort(geomspace(1e-3, 1e-1, 3))", "optimizer.lr=sort(0.001,0.01,0.1)"),
    ("optimizer.lr=geomspace(1e-4,1,5)", "optimizer.lr=0.0001,0.001,0.01,0.1,1"),
    ("optimizer.lr=logspace(1e-4,1,5)", "optimizer.lr=0.0001,0.001,0.01,0.1,1"),
    ("optimizer.lr=linspace(0.1,0.3,3.0)", "optimizer.lr=0.1,0.2,0.3"),
    ("+stopping.gtol=sort(range(0.1,0.5,0.1))", "+stopping.gtol=sort(0.1,0.2,0.3,0.4)"),
]


@pytest.mark.parametrize("given, hydra_gets", EXPANDED, ids=[e[0] for e in EXPANDED])
def test_grids_expand_to_clean_values_also_inside_sort_and_shuffle(given, hydra_gets):
    assert expand(given) == hydra_gets


def test_sorted_and_shuffled_grids_run_the_values_of_the_range(gdexp, store):
    code, _, err = gdexp("-m", "loss=booth", "optimizer.lr=sort(range(1.3,0,-0.5))", "stopping.maxiter=5")
    assert code == 0, err
    code, _, err = gdexp("-m", "loss=booth", "optimizer.lr=shuffle(range(0.01,0.05,0.01))",
                         "stopping.gtol=sort(range(0.1,0.5,0.1))", "stopping.maxiter=5")
    assert code == 0, err
    runs = [r for r in runs_in(store) if "optimizer.lr" in r.data.params]
    lrs = sorted({r.data.params["optimizer.lr"] for r in runs}, key=float)
    assert lrs == ["0.01", "0.02", "0.03", "0.04", "0.3", "0.8", "1.3"]
    # The params are what the table shows: 0.3, never 0.30000000000000004.
    assert sorted({r.data.params["stopping.gtol"] for r in runs if float(r.data.params["optimizer.lr"]) < 0.1}) \
        == ["0.1", "0.2", "0.3", "0.4"]


# --- 18: gdexp's own --help and --info ------------------------------------------------------------
def test_help_is_gdexps_own_and_lists_every_group_sweep_and_command(gdexp, store):
    from gdexp.commands.main import SUBCOMMANDS
    from gdexp.hydra.named_sweeps import available
    from gdexp.hydra.paths import conf_dir

    for flag in ("--help", "-h"):
        code, out, err = gdexp(flag)
        assert code == 0 and err == ""
        assert out.startswith("gdexp: ") and "powered by Hydra" not in out
        assert "schema/" not in out and "plugins" not in out and "config_schema" not in out
        groups = sorted(p.name for p in conf_dir().iterdir() if p.is_dir() and p.name != "plugins")
        for group in groups:
            options = sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))
            line = next(line for line in out.splitlines() if line.startswith(f"  {group}: "))
            assert sorted(line.split(": ", 1)[1].split(", ")) == options
        for name in available():
            assert f"gdexp +sweep={name} " in out
        for name in SUBCOMMANDS:
            assert f"gdexp {name} --help" in out
        assert "pip install 'gdexp[ray]'" in out and "pip install 'gdexp[slurm]'" in out


@pytest.mark.parametrize("args", [["--info"], ["--info", "plugins"], ["loss=booth", "--info", "all"]])
def test_info_names_gdexps_launchers_by_their_class(gdexp, store, tmp_path, args):
    code, out, err = gdexp(*args)
    assert code == 0, err
    assert "_Lazy" not in out and "Traceback" not in err
    if args[-1] in ("plugins", "all"):
        assert "BatchedLauncher" in out and "GridSweeper" in out and "LrFindSweeper" in out
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "multirun").exists()  # nothing ran


def test_cfg_job_prints_the_config_with_overrides_anywhere(gdexp, store):
    for args in (["--cfg", "job", "loss=booth"], ["loss=booth", "--cfg", "job"]):
        code, out, err = gdexp(*args)
        assert code == 0, err
        assert "_target_: gdexp.core.losses.Booth" in out


# --- 1: what works without an extra ------------------------------------------------------------
def test_the_search_sweepers_are_registered_without_the_slurm_extra(monkeypatch):
    """lr_find and optuna were stored after the submitit presets' early return."""
    from hydra.core.config_store import ConfigStore

    from gdexp.hydra.plugin_configs import store_plugins

    monkeypatch.setitem(sys.modules, "hydra_plugins.hydra_submitit_launcher", None)
    monkeypatch.setitem(sys.modules, "hydra_plugins.hydra_submitit_launcher.config", None)
    fresh = ConfigStore.__new__(ConfigStore)
    fresh.__init__()
    store_plugins(fresh)
    sweepers = set(fresh.repo["hydra"]["sweeper"])
    launchers = set(fresh.repo["hydra"]["launcher"])
    assert {"gdexp.yaml", "lr_find.yaml", "optuna.yaml"} <= sweepers
    assert {"gdexp.yaml", "ray.yaml"} <= launchers and "submitit_local.yaml" not in launchers


EXTRAS = [("hydra/launcher=ray", "ray", "hydra_plugins.hydra_ray_launcher"),
          ("hydra/launcher=submitit_local", "slurm", "hydra_plugins.hydra_submitit_launcher"),
          ("hydra/launcher=submitit_slurm", "slurm", "hydra_plugins.hydra_submitit_launcher")]


@pytest.mark.parametrize("choice, extra, module", EXTRAS, ids=[e[0] for e in EXTRAS])
def test_a_launcher_whose_extra_is_missing_names_the_extra(gdexp, store, monkeypatch, choice, extra, module):
    monkeypatch.setitem(sys.modules, module, None)  # what `import` meets when the extra is not installed
    key, _, value = choice.partition("=")
    assert_refused(gdexp, store, ["-m", "loss=booth", "optimizer.lr=0.01,0.1", choice], key,
                   f"pip install 'gdexp[{extra}]'")


def test_a_function_loss_without_jax_names_the_extra(gdexp, store, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "jax", None)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "plainloss.py").write_text("def bowl(x):\n    return (x ** 2).sum()\n")
    assert_refused(gdexp, store, ["loss=custom", "loss._target_=plainloss.bowl", "loss.dim=2"],
                   "loss._target_", "pip install 'gdexp[jax]'")


def test_refusals_leave_no_output_folder(gdexp, store, tmp_path):
    """A refused command makes no Hydra folder either (nothing ran)."""
    assert_refused(gdexp, store, ["optimizer.lr=0.1", "optimizer.lr=0.2"], "optimizer.lr")
    assert_refused(gdexp, store, ["-m", "optimizer.lr=logspace(0,1,3)"], "optimizer.lr")
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "multirun").exists()


@pytest.mark.parametrize("args, key, value", [
    (["stopping.maxiter=1e2", "stopping.gtol=0"], "stopping.maxiter", "100"),
    (["stopping.maxiter=20", "stopping.patience=1e1"], "stopping.patience", "10"),
    (["loss=linear_regression", "loss.n=1e2", "stopping.maxiter=5"], "loss.n", "100"),
])
def test_every_count_takes_an_exponent_form_as_the_integer_it_is(gdexp, store, args, key, value):
    """1e2 is 100 for every integer key alike (Hydra's typed schema refused it for stopping.* only)."""
    code, out, err = gdexp(*args)
    assert code == 0, err
    (run,) = MlflowClient(store).search_runs([e.experiment_id for e in MlflowClient(store).search_experiments()])
    assert run.data.params[key] == value
    if key == "stopping.maxiter":
        assert run.data.metrics["iterations"] == 100


@pytest.mark.parametrize("arg, shown", [("stopping.maxiter=1.5", "stopping.maxiter=1.5: must be an integer"),
                                        ("loss.n=1.5", "loss.n=1.5: must be an integer"),
                                        ("stopping.patience=abc", "stopping.patience='abc': must be an integer")])
def test_a_count_that_is_not_an_integer_is_one_line(gdexp, store, arg, shown):
    code, out, err = gdexp("loss=linear_regression", arg)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == EXIT_INVALID_INPUT and len(lines) == 1 and lines[0].startswith(f"gdexp: error: {shown}"), err


@pytest.mark.parametrize("args", [["optimizer.lr=0.1,0.2"], ["loss=booth", "seed=0,1,2"]])
def test_a_comma_list_without_multirun_says_to_add_it(gdexp, store, args):
    """Hydra's own words were 'Ambiguous value for argument ...': no key, no way out."""
    import gdexp as api

    key, _, value = args[-1].partition("=")
    assert_refused(gdexp, store, args, f"{key}='{value}'", "several values make a sweep: add -m")
    with pytest.raises(ConfigError, match="several values make a sweep: add -m"):
        api.run(args)
