"""Sweeps told apart: parent runs named after what defines them, run names unique within a sweep
whatever the options are called, comparisons labelled by the keys in which sweeps differ
(everything read back through MlflowClient)."""
from __future__ import annotations

import pytest
from cli_runner import runs_of

from gdexp.commands.help import help_text
from gdexp.commands.main import SUBCOMMANDS

SHORT = ("stopping.maxiter=20", "tracking.curve_points=5")


@pytest.mark.parametrize("args, name", [
    (["+sweep=lr_grid", "loss=booth", "optimizer=momentum", "optimizer.lr=0.01,0.1", *SHORT],
     "lr_grid loss=booth optimizer=momentum optimizer.lr=0.01,0.1 stopping.maxiter=20"),
    (["-m", "loss=booth", "optimizer.lr=0.01,0.1", "seed=0,1", *SHORT], "optimizer.lr x seed loss=booth stopping.maxiter=20"),
    (["-m", "loss=booth", "optimizer.lr=logspace(1e-3,1e-1,3)", *SHORT], "optimizer.lr loss=booth stopping.maxiter=20"),
], ids=["named", "grid", "logspace"])
def test_a_sweep_parent_is_named_after_what_defines_it(gdexp, store, args, name):
    code, out, err = gdexp(*args)
    assert code == 0, err
    _, children, (parent,) = runs_of(store)
    assert parent.info.run_name == name
    assert parent.data.tags["gdexp.sweep_name"] == ("lr_grid" if "+sweep=lr_grid" in args else name)
    assert "multirun" not in parent.info.run_name and children
    code, out, err = gdexp("report", "--sweep", parent.info.run_id)  # its report folder likewise
    assert code == 0, err
    safe = name.replace(" ", "_").replace("=", "_").replace(",", "_")
    assert f"reports/{safe}-{parent.info.run_id[:8]}/" in out.replace("__", "_")


def _heavy(tmp_path):
    folder = tmp_path / "myconf" / "optimizer"
    folder.mkdir(parents=True)
    (folder / "heavy.yaml").write_text("defaults: [momentum, _self_]\nmomentum: 0.99\n")
    return f"hydra.searchpath=[file://{tmp_path / 'myconf'}]"


def test_run_names_are_unique_when_an_option_inherits_another_ones_name(gdexp, store, tmp_path):
    code, _, err = gdexp("-m", _heavy(tmp_path), "loss=booth", "optimizer=heavy,momentum", "optimizer.lr=0.01", *SHORT)
    assert code == 0, err
    _, children, _ = runs_of(store)
    names = {r.info.run_name: r.data.params["optimizer.momentum"] for r in children}
    assert names == {"booth-heavy-lr=0.01": "0.99", "booth-momentum-lr=0.01": "0.9"}


def test_help_lists_options_on_the_search_path(tmp_path):
    searchpath = _heavy(tmp_path)
    line = next(x for x in help_text(SUBCOMMANDS, [searchpath]).splitlines() if x.startswith("  optimizer:"))
    assert "heavy" in line.split(": ", 1)[1].replace(",", " ").split()
    plain = next(x for x in help_text(SUBCOMMANDS).splitlines() if x.startswith("  optimizer:"))
    assert "heavy" not in plain


def test_compare_labels_each_sweep_by_the_keys_in_which_the_sweeps_differ(gdexp, store):
    for optimizer in ("momentum", "gd"):
        code, _, err = gdexp("-m", "loss=booth", f"optimizer={optimizer}", "optimizer.lr=0.01,0.1", *SHORT)
        assert code == 0, err
    for _ in range(2):  # the same sweep twice: alike in every key
        assert gdexp("-m", "loss=booth", "optimizer.lr=0.01,0.1", "seed=0", *SHORT)[0] == 0
    cl, _, parents = runs_of(store)
    by_name = {}
    for p in parents:
        by_name.setdefault(p.info.run_name, []).append(p.info.run_id)
    momentum, gd = by_name["optimizer.lr loss=booth optimizer=momentum stopping.maxiter=20"][0], \
        by_name["optimizer.lr loss=booth optimizer=gd stopping.maxiter=20"][0]
    code, out, err = gdexp("compare", momentum, gd, "--out", "cmp")
    assert code == 0, err
    md = open("cmp/report.md").read()
    assert "`optimizer=momentum` (`" in md and "`optimizer=gd` (`" in md
    from gdexp.report.select import select

    sel = select(None, [momentum, gd], store)
    assert set(sel.runs["sweep"]) == {"optimizer=momentum", "optimizer=gd"}
    # alike in every key and in name: told apart by when they started, and renamed in MLflow for its charts
    twins = by_name["optimizer.lr loss=booth seed=0 stopping.maxiter=20"]
    code, out, err = gdexp("compare", *twins, "--out", "twins")
    assert code == 0, err
    names = {cl.get_run(i).info.run_name for i in twins}
    assert len(names) == 2 and all(n.startswith("optimizer.lr loss=booth seed=0 stopping.maxiter=20 [") for n in names)
