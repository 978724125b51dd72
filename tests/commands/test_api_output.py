"""gdexp.run and gdexp.sweep in a notebook: typed values as load_runs gives them, nothing printed
unless verbose=True, every message on the `gdexp` logger."""
from __future__ import annotations

import logging

import gdexp as api

OVERRIDES = ["loss=quadratic", "loss.eigenvalues=[1,100]", "optimizer.lr=0.01", "stopping.maxiter=30"]


def test_run_returns_the_types_load_runs_gives(store):
    row = api.run(OVERRIDES)
    table = api.load_runs(experiment="gdexp", tracking_uri=store)
    assert type(row["optimizer.lr"]) is float and row["optimizer.lr"] == 0.01
    assert type(row["stopping.maxiter"]) is int and row["stopping.maxiter"] == 30
    assert type(row["iterations"]) is int and row["loss.eigenvalues"] == "[1,100]"
    assert row["init"] is None and type(row["diverged"]) is bool
    for key in ("optimizer.lr", "stopping.maxiter", "seed", "loss.eigenvalues", "final_loss", "status"):
        assert row[key] == table[key].iloc[0], key


def test_the_api_prints_nothing_and_logs_through_the_gdexp_logger(store, capfd, caplog):
    capfd.readouterr()
    with caplog.at_level(logging.INFO, logger="gdexp"):
        row = api.run(OVERRIDES)
        api.sweep([*OVERRIDES[:2], "optimizer.lr=0.001,0.01", "stopping.maxiter=30"])
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    logged = [r.getMessage() for r in caplog.records if r.name == "gdexp"]
    assert any(row["run_id"] in line and row["run_name"] in line for line in logged)  # the run's line
    assert any("mlflow ui" in line for line in logged)                                 # where to look


def test_verbose_prints_what_the_command_line_prints(store, capsys, gdexp):
    code, cli_out, _ = gdexp(*OVERRIDES)
    assert code == 0
    capsys.readouterr()
    row = api.run(OVERRIDES, verbose=True)
    out, _ = capsys.readouterr()
    first = cli_out.splitlines()[0]
    assert out.splitlines()[0] == first.replace(first.rsplit("(run ", 1)[1], f"{row['run_id']})")
