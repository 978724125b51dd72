"""gdexp/hydra/precheck.py: a plain command line's bad value refused before Hydra starts, in the
line Hydra's path says; anything it cannot compose as Hydra would left to Hydra; its configs Hydra's."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import gdexp.commands.main as command
import gdexp.hydra.precheck as precheck
from gdexp.core.errors import ConfigError
from gdexp.hydra.paths import conf_dir
from gdexp.hydra.precheck import MAX_JOBS, _config, _jobs, _text, _Unusual, check_before_hydra

REPO = Path(__file__).resolve().parents[2]

# (the command line, the line both paths print: the one gdexp printed before this check existed)
REFUSED = [
    (["optimizer.lr=-1"], "optimizer.lr=-1: must be finite and > 0"),
    (["optimizer.lr=0"], "optimizer.lr=0: must be finite and > 0"),
    (["optimizer.lr=abc"], "optimizer.lr='abc': must be a number"),
    (["optimizer.lr=inf"], "optimizer.lr=inf: must be finite and > 0"),
    (["optimizer.lr=null"], "optimizer.lr=None: must be a number, not null"),
    (["optimizer.lr=[0.1]"], "optimizer.lr=[0.1]: must be a number"),
    (["optimizer=adam", "optimizer.beta1=2"], "optimizer.beta1=2: must be in [0, 1)"),
    (["optimizer=adam", "optimizer.amsgrad=maybe"], "optimizer.amsgrad='maybe': must be true or false"),
    (["optimizer=momentum", "optimizer.momentum=-0.5"], "optimizer.momentum=-0.5: must be finite and >= 0"),
    (["loss=quadratic", "loss.eigenvalues=[-1]"], "loss.eigenvalues=[-1.0]: need one or more eigenvalues, all > 0"),
    (["loss=rosenbrock", "loss.dim=1"], "loss.dim=1: must be an integer >= 2"),
    (["loss=linear_regression", "loss.batch_size=0"],
     "loss.batch_size=0: must be null (full batch) or an integer >= 1"),
    (["stopping.maxiter=-5"], "stopping.maxiter=-5: must be >= 1"),
    (["stopping.maxiter=1.5"], "stopping.maxiter=1.5: must be an integer"),
    (["stopping.gtol=-1"], "stopping.gtol=-1.0: must be finite and >= 0"),
    (["stopping.prune=fast"], "stopping.prune='fast': must be one of none, halving"),
    (["schedule=step", "schedule.gamma=-1"], "schedule.gamma=-1.0: must be finite and > 0"),
    (["schedule=multistep", "schedule.milestones=[200,100]"], "schedule.milestones=[200, 100]: must be strictly increasing"),
    (["tracking.curve_points=1"], "tracking.curve_points=1: must be >= 2"),
    (["summary.rtol=-1"], "summary.rtol=-1.0: must be finite and >= 0"),
    (["seed=-1"], "seed=-1: must be >= 0"),
    (["init=[1]"], "init=[1.0]: needs 2 values for loss rosenbrock (dim=2)"),
    (["-m", "optimizer.lr=0.1,-1"], "optimizer.lr=-1: must be finite and > 0 (job #1: optimizer.lr=-1)"),
    (["-m", "stopping.maxiter=10,-5", "optimizer.lr=-1,0.1"],
     "optimizer.lr=-1: must be finite and > 0 (job #0: stopping.maxiter=10 optimizer.lr=-1)"),
    (["-m", "optimizer=gd,adam", "optimizer.lr=1e-3,-1e-3"],
     "optimizer.lr=-0.001: must be finite and > 0 (job #1: optimizer=gd optimizer.lr=-0.001)"),
    (["--multirun", "optimizer=adam", "optimizer.beta1=0.5,2", "seed=0,1"],
     "optimizer.beta1=2: must be in [0, 1) (job #2: optimizer=adam optimizer.beta1=2 seed=0)"),
    (["-m", "loss=quadratic", "loss.eigenvalues=[1,-1]"],
     "loss.eigenvalues=[1.0, -1.0]: need one or more eigenvalues, all > 0 (job #0: loss=quadratic loss.eigenvalues=[1,-1])"),
    (["-m", "schedule=step", "schedule.gamma=0.5,-1"],
     "schedule.gamma=-1.0: must be finite and > 0 (job #1: schedule=step schedule.gamma=-1)"),
    # A sweep's job takes its values untyped (gdexp.hydra.compose.JobComposer): [1], not [1.0] as above.
    (["-m", "init=[1]", "seed=0,1"], "init=[1]: needs 2 values for loss rosenbrock (dim=2) (job #0: init=[1] seed=0)"),
    (["-m", "summary.rtol=-1", "seed=0,1"], "summary.rtol=-1: must be finite and >= 0 (job #0: summary.rtol=-1 seed=0)"),
]


def _hydra_not_started(argv, task_function):
    raise AssertionError(f"the check before Hydra let {argv} through")


@pytest.mark.parametrize("args, line", REFUSED, ids=[" ".join(a) for a, _ in REFUSED])
def test_a_value_refused_before_hydra_is_the_line_hydras_path_says(gdexp, store, tmp_path, monkeypatch, args, line):
    with pytest.raises(ConfigError) as early:
        check_before_hydra(args)
    assert str(early.value) == line
    with monkeypatch.context() as m:
        m.setattr(command, "hydra_app", _hydra_not_started)
        refused_early = gdexp(*args)
    hydra_app, started = command.hydra_app, []
    with monkeypatch.context() as m:
        m.setattr(precheck, "check_before_hydra", lambda argv: None)
        m.setattr(command, "hydra_app", lambda *a: started.append(a) or hydra_app(*a))
        refused_late = gdexp(*args)
    assert started  # the late line is Hydra's path's
    assert refused_early == refused_late == (2, "", f"gdexp: error: {line}\n")
    assert os.listdir(tmp_path) == []  # no store (so no run), no outputs/ or multirun/ folder


# Command lines the check leaves to Hydra's path, and why.
LEFT_TO_HYDRA = [
    ([], "valid: the defaults"),
    (["-m", "optimizer.lr=0.1,0.01", "seed=0,1"], "valid: a sweep"),
    (["stopping.maxiter=1e2"], "valid: a count in exponent form"),
    (["+optimizer.foo=1"], "a key added with +"),
    (["~init"], "a key deleted"),
    (["optimizer.lrr=-1"], "a key the option lacks: Hydra's line lists the valid ones"),
    (["-m", "optimizer=gd,adam", "optimizer.beta1=2"], "a key one swept option lacks"),
    (["optimizer.lr=0.1", "optimizer.lr=-1"], "a key given twice"),
    (["optimizer.lr=0.1,-1"], "a comma list without -m"),
    (["-m", "optimizer.lr=logspace(-1,1,3)"], "a grid"),
    (["optimizer.lr='-1'"], "quotes"),
    (["optimizer.lr=${seed}"], "an interpolation"),
    (["optimizer.lr=-1", "--cfg", "job"], "a flag of Hydra's: it prints the config, refusing nothing"),
    (["optimizer.lr=-1", "hydra.run.dir=elsewhere"], "a key of Hydra's"),
    (["optimizer=nope", "optimizer.lr=-1"], "an option that does not exist"),
    (["tracking=server", "optimizer.lr=-1"], "an option holding an interpolation"),
    (["loss=custom", "optimizer.lr=-1"], "an option holding ??? (MISSING)"),
    (["stopping.gtol=abc"], "a value the schema refuses for a float"),
    (["seed=1.5"], "a value the schema refuses for an int"),
    (["tracking.experiment=5"], "a value the schema converts (to '5')"),
    (["budget.max_iter=5"], "a deprecated key"),
    (["loss=expression", "loss.expr=true"], "a formula: gdexp quotes it for Hydra (true is text there)"),
    (["loss=expression", "loss.expr=null"], "a formula read as null before quoting"),
    (["-m", "loss=expression", "loss.expr=x,y", "optimizer.lr=-1"], "a formula with a comma: one formula"),
    (["-m", "optimizer.lr=" + ",".join(["-1"] * (MAX_JOBS + 1))], "more jobs than MAX_JOBS"),
]


@pytest.mark.parametrize("args, why", LEFT_TO_HYDRA, ids=[w for _, w in LEFT_TO_HYDRA])
def test_what_it_cannot_compose_as_hydra_would_is_left_to_hydra(store, args, why):
    assert check_before_hydra(args) is None


def test_a_refusal_of_a_key_not_typed_is_left_to_hydra(store, monkeypatch):
    """Only a refusal naming a key the command line sets is said early: of anything else (a
    default composed otherwise than Hydra would), Hydra's path is the judge."""
    def refuse_a_default(config):
        raise ConfigError("loss.b", config["loss"]["b"], "refused")

    monkeypatch.setattr(precheck, "job_spec", refuse_a_default)
    assert check_before_hydra(["optimizer.lr=-1"]) is None
    with pytest.raises(ConfigError, match="loss.b=100.0: refused"):
        check_before_hydra(["loss.b=100.0"])


def test_a_refusal_before_hydra_imports_neither_hydra_omegaconf_pandas_nor_mlflow(tmp_path):
    script = ("import json, sys\nfrom gdexp.commands.main import main\n"
              "try:\n    main(sys.argv[1:])\nexcept SystemExit as exc:\n"
              "    frameworks = ('hydra', 'omegaconf', 'pandas', 'mlflow')\n"
              "    print(json.dumps([exc.code, [m for m in frameworks if m in sys.modules]]))\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    for args, line in ((["optimizer.lr=-1"], "optimizer.lr=-1: must be finite and > 0"),
                       (["-m", "optimizer.lr=0.1,-1"], "optimizer.lr=-1: must be finite and > 0 (job #1: optimizer.lr=-1)")):
        done = subprocess.run([sys.executable, "-c", script, *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
        assert json.loads(done.stdout) == [2, []], done.stderr
        assert done.stderr == f"gdexp: error: {line}\n"
    assert os.listdir(tmp_path) == []


# Every option of every group the check composes; the few it leaves to Hydra, named.
OPTIONS = [(p.parent.name, p.stem) for group in ("loss", "optimizer", "schedule", "stopping", "tracking")
           for p in sorted((conf_dir() / group).glob("*.yaml"))]
NOT_COMPOSED = {("loss", "custom"), ("loss", "torch"), ("tracking", "server")}  # ???, ${oc.env:...}


def _strict(config: dict) -> str:
    """Values, types (1 is not 1.0) and key order, as one text."""
    return json.dumps(config)


@pytest.mark.parametrize("group, option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_each_option_composes_as_hydra_composes_it(compose, group, option):
    job = ((group, option),)
    if (group, option) in NOT_COMPOSED:
        with pytest.raises(_Unusual):
            _config(job, multirun=False)
        return
    assert _strict(_config(job, multirun=False)) == _strict(compose(f"{group}={option}"))


@pytest.mark.parametrize("overrides", [
    ["optimizer.lr=1e-3", "optimizer.weight_decay=1", "seed=3", "init=[1,2]"],
    ["stopping.gtol=0", "stopping.maxiter=1e2", "tracking.live_every=5", "tracking.uri=null", "summary.rtol=0"],
    ["loss=quadratic", "loss.center=[1,2.5]", "loss.eigenvalues=5", "loss.rotate=TRUE", "optimizer.lr=+1_000"],
    ["optimizer=adam", "optimizer.eps=.5", "optimizer.lr=nan", "schedule=multistep", "schedule.milestones=[]"],
    ["loss=mlp", "loss.hidden=[]", "loss.dataset=null", "loss.data=data/x.csv", "optimizer.lr=1e-3x"],
])
def test_a_command_lines_values_are_the_ones_hydra_gives(compose, overrides):
    (job,) = _jobs(overrides, multirun=False)
    assert _strict(_config(job, multirun=False)) == _strict(compose(*overrides))


def test_a_sweeps_jobs_are_the_ones_its_sweeper_makes(compose):
    """The jobs in the basic sweeper's order, written as it writes them, with the configs the
    sweep's composer gives them (values untyped: gdexp.hydra.compose.JobComposer)."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from gdexp.hydra.compose import JobComposer
    from gdexp.hydra.internals import BasicSweeper

    argv = ["loss=booth,quadratic", "optimizer=adam", "optimizer.lr=1e-3,-1,abc,1_0,.5", "optimizer.amsgrad=true,False",
            "init=[1,2.0]", "summary.rtol=-1", "seed=0,1"]
    jobs = _jobs(argv, multirun=True)
    (batch,) = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(argv), None)
    assert [[f"{k}={_text(v)}" for k, v in job] for job in jobs] == batch
    master = compose(raw=True)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base=None):
        composer = JobComposer(GlobalHydra.instance().config_loader(), master)
        for job, overrides in zip(jobs, batch):
            assert _strict(_config(job, multirun=True)) == _strict(composer.task_config(overrides))
