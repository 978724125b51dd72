"""The `gdexp` command: `report`, `compare`, `rerun`, `resume` dispatched first; the rest is Hydra's app.

Every input gdexp refuses ends in one line, ``gdexp: error: KEY=VALUE: reason``,
and exit status 2 (gdexp.commands.exits.EXIT_INVALID_INPUT), before any MLflow run
exists: gdexp's own checks and Hydra's composition errors alike.
"""
from __future__ import annotations

import gc
import os
from contextlib import contextmanager
import re
import sys

from pathlib import Path

from gdexp.commands.exits import console, exit_for, exit_invalid
from gdexp.core.errors import ConfigError
from gdexp.tracking import interrupts
from gdexp.tracking.errors import RunsFailed, SearchFailed, SweepInterrupted, Unrecorded

SUBCOMMANDS = {
    "report": ("gdexp.commands.report", "a sweep's report (html + md, figures)"),
    "compare": ("gdexp.commands.report", "one report comparing several sweeps"),
    "rerun": ("gdexp.commands.rerun", "re-execute runs from their logged config, compare curves"),
    "resume": ("gdexp.commands.resume", "finish an interrupted sweep: record kept runs, run the missing ones"),
}


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `gdexp` console script."""
    # Python's cyclic GC at its default thresholds (700, 10, 10) spent ~0.45 s of a ~3 s single run
    # (MLflow's imports build a large heap, traversed again by each full collection) and ~0.7 s of
    # a 1,000-run sweep (the metric points as tuples). Collections 140x rarer cost ~0.15 s and
    # ~0.25 s; reference counting still frees everything outside cycles at once. The command's
    # process only: gdexp used as a library leaves the caller's GC alone.
    gc.set_threshold(100_000, 50, 10)
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] and argv[0] in SUBCOMMANDS:
        import importlib

        module = importlib.import_module(SUBCOMMANDS[argv[0]][0])
        with console():
            sys.exit(getattr(module, "compare_main" if argv[0] == "compare" else "main")(argv[1:]))
    if "--help" in argv or "-h" in argv:
        from gdexp.commands.help import help_text

        print(help_text(SUBCOMMANDS, [a for a in argv if a not in ("--help", "-h")]))
        return
    with console():
        run_hydra(argv)


def run_hydra(argv: list[str]) -> None:
    """Hydra's app on `argv` (overrides and Hydra's flags); every error that ends it as its one
    line and exit status (gdexp.commands.exits). A bad value of a plain command line is refused
    before Hydra starts (gdexp.hydra.precheck): the same line, in a fifth of the time."""
    from gdexp.hydra.precheck import check_before_hydra
    from gdexp.tracking.writes import close_open_runs, runs_created

    created = runs_created()

    def task_function(cfg) -> dict:  # the command line as typed, for Hydra's errors about it
        return _task(cfg, argv)

    try:
        check_before_hydra(argv)
        hydra_app(argv, task_function)
    except SweepInterrupted as exc:  # the sweep closed its runs and says how to finish
        exit_for(exc)
    except KeyboardInterrupt as exc:
        # The run in flight is marked KILLED, if the interrupt came before the code that does it.
        close_open_runs()
        what = ("the run in flight is marked KILLED" if runs_created() > created
                else "before its MLflow run was created: nothing recorded")
        print(f"gdexp: interrupted ({interrupts.name(exc)}); {what}", file=sys.stderr)
        sys.exit(interrupts.exit_status(exc))
    except (ConfigError, Unrecorded, RunsFailed, SearchFailed) as exc:
        exit_for(exc)


def hydra_app(argv: list[str], task_function, typed: list[str] | None = None) -> None:
    """Hydra's app on `argv` with `task_function` as its task, sys.argv left alone; `typed` is the
    command as the user gave it, recorded on a sweep's parent (default: `argv`).

    Raises:
        ConfigError: input gdexp or Hydra refuses (Hydra's and OmegaConf's errors about the
            input become one line ``KEY=VALUE: reason``), before any MLflow run exists.
        gdexp.tracking.errors.*: a sweep that ran and failed, was interrupted, or left runs on disk.
    """
    from gdexp.hydra.argv import prepare
    from gdexp.hydra.internals import run_app
    from gdexp.hydra.named_sweeps import register_sweeps
    from gdexp.hydra.paths import conf_dir
    from gdexp.hydra.schema import register_configs
    from gdexp.tracking.provenance import set_command

    set_command(argv if typed is None else typed)  # as typed, before the grids are expanded
    hydra_argv = prepare(argv)
    register_configs()
    register_sweeps()
    saved_full = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra's errors reach us as exceptions, not its printed report
    try:
        with interrupts.handled(), input_errors(argv):  # SIGTERM stops gdexp as Ctrl-C does
            run_app(hydra_argv, task_function, str(conf_dir()), "config")
    finally:
        if saved_full is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = saved_full


@contextmanager
def input_errors(argv: list[str]):
    """Hydra's and OmegaConf's errors about the user's input (`argv`) raised as ConfigError, one line
    ``KEY=VALUE: reason``; gdexp's own typed errors and any other error (a bug) as they are."""
    try:
        yield
    except (ConfigError, RuntimeError, KeyboardInterrupt):
        raise
    except Exception as exc:
        message = hydra_error(exc, argv)
        if message is None:
            raise
        raise as_config_error(message) from None


def _task(cfg, argv: list[str]) -> dict:
    """The command's Hydra task: gdexp.hydra.task.task, a single run's line printed, its refusals one line."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from gdexp.hydra.task import task

    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        row = task(cfg)
    except ConfigError as exc:
        if multirun:
            raise  # a job of a sweep: the sweep reports it
        discard_output_dir(HydraConfig.get().runtime.output_dir)
        exit_invalid(exc)  # out of Hydra's job runner without its "Error executing job" lines
    except Exception as exc:  # OmegaConf's, resolving the config (an interpolation ${...}): the user's input
        message = hydra_error(exc, argv)
        if message is None or multirun:
            raise
        discard_output_dir(HydraConfig.get().runtime.output_dir)
        exit_invalid(message)
    if not multirun:
        say_single(row, cfg.tracking.uri, cfg.tracking.experiment)
    return row


def say_single(row: dict, uri: str | None, experiment: str) -> None:
    """What a single run prints: its line and where to look; exit 1 if the store did not take it."""
    from gdexp.core.outcomes import UNRECORDED
    from gdexp.hydra.jobs import run_line
    from gdexp.tracking.store import open_store, resolve_uri, where_to_look

    if row["status"] == UNRECORDED:
        exit_for(Unrecorded(1, row["uri"], row["error"], Path(row["kept"]).parent.parent))
    store = open_store(resolve_uri(uri), experiment)  # the run's, opened already: one client per store
    print(run_line(row))
    print(where_to_look(store.uri, store.experiment_id, row["run_id"], single=True))


def as_config_error(error) -> ConfigError:
    """The ConfigError of a refusal; one of Hydra's, already a line ``KEY=VALUE: reason``, keeps its text.

    >>> str(as_config_error("loss='nope': no such option; options: beale, booth"))
    "loss='nope': no such option; options: beale, booth"
    >>> as_config_error("loss='nope': no such option").key
    'loss'
    """
    if isinstance(error, ConfigError):
        return error
    line = str(error)
    key, eq, rest = line.partition("=")
    value, colon, reason = rest.partition(": ")
    out = ConfigError(key, value, reason) if eq and colon else ConfigError("input", None, line)
    out.args = (line,)  # the text the command prints, unquoted
    return out


def discard_output_dir(output_dir: str) -> None:
    """Remove the output folder Hydra made for a single run that was refused (a refused sweep
    leaves nothing either): only when it holds nothing but Hydra's own files (.hydra/, the
    job's .log), then its parents (outputs/DATE) as they become empty, up to the start folder."""
    import shutil
    from pathlib import Path

    folder = Path(output_dir).resolve()
    start = Path.cwd().resolve()
    if folder == start or start not in folder.parents:
        return
    if any(p.name != ".hydra" and p.suffix != ".log" for p in folder.iterdir()):
        return
    shutil.rmtree(folder, ignore_errors=True)
    for parent in folder.parents:
        if parent == start:
            break
        try:
            parent.rmdir()
        except OSError:
            break


def hydra_error(exc: BaseException, argv: list[str]) -> str | None:
    """Hydra's and OmegaConf's errors about the user's input, as one line ``KEY=VALUE: reason``;
    None for any other error (a bug: it keeps its traceback).

    >>> class E(Exception): pass
    >>> E.__module__ = "hydra.errors"
    >>> hydra_error(E("In 'config': Could not find 'loss/nope'\\n\\nAvailable options in 'loss':\\n\\tbeale\\n\\tbooth\\n"), ["loss=nope"])
    "loss='nope': no such option; options: beale, booth"
    """
    chain, seen = [], exc
    while seen is not None:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    ours = any(type(e).__module__.split(".")[0] in ("hydra", "omegaconf") or _raised_in_hydra(e) for e in chain)
    if not ours and not any("full_key: " in str(e) for e in chain):  # OmegaConf adds full_key to what it raises
        return None
    text = "\n".join(str(e) for e in chain)
    given = {a.partition("=")[0].lstrip("+~"): _literal(a.partition("=")[2]) for a in argv if "=" in a}

    missing = re.search(r"Could not find '([^']+)/([^']+)'", text)
    if missing:
        group, option = missing.groups()
        options = re.findall(r"^\t(\S+)$", text, re.M)
        shown = f"; options: {', '.join(options)}" if options else ""
        return str(ConfigError(group.replace("/", "."), option, f"no such option{shown}"))
    override = (re.search(r"Could not override '([^']+)'", text) or re.search(r"full_key: (\S+)", text)
                or re.search(r"Error merging override ([^=\s]+)=", text))
    key = override.group(1).lstrip("+~") if override else None
    if key is not None:
        value = given.get(key, given.get(f"+{key}"))
        # a dict node says "Key 'k' is not in struct", a schema's dataclass "Key 'k' not in 'StoppingConfig'"
        if "not in struct" in text or re.search(r"Key '[^']+' (is )?not in '", text):
            return str(ConfigError(key, value, f"not a config key; {_valid_keys(key, given)}"))
        validation = re.search(r"Value '([^']*)' (?:of type '\w+' )?could not be converted to (\w+)", text)
        if validation:
            return str(ConfigError(key, value if value is not None else validation.group(1),
                                   f"must be {_article(validation.group(2))}"))
        if re.search(r"is not a ListConfig|is not a subclass of ListConfig", text):
            return str(ConfigError(key, value, "must be a list"))
        # Anything else OmegaConf says about the value (an interpolation, a number out of range): its words.
        deepest = next((line.strip() for line in str(chain[-1]).splitlines() if line.strip()), type(chain[-1]).__name__)
        return str(ConfigError(key, value, deepest))
    parse = re.search(r"Error parsing override '([^']+)'\n?(.*)", text)
    if parse:
        bad = parse.group(1)
        return str(ConfigError(bad.partition("=")[0], bad.partition("=")[2],
                               f"cannot be parsed ({parse.group(2).strip() or 'Hydra override syntax'})"))
    unparsed = re.search(r"no viable alternative at input '(.*)'", text)
    bad = _override_holding(argv, unparsed.group(1)) if unparsed else None
    if bad:
        return str(ConfigError(bad.partition("=")[0], bad.partition("=")[2],
                               "cannot be parsed (Hydra override syntax: a bracket or parenthesis left open?)"))
    if "does not support sweep type" in text:
        bad = next((a for a in argv if re.search(r"=\s*(tag\(.*)?interval\(", a)), None)
        if bad:
            return str(ConfigError(bad.partition("=")[0], bad.partition("=")[2],
                                   "interval() is a range to search, not a grid: use +sweep=lr_optuna, "
                                   "or give values (a,b,c or logspace(a,b,n))"))
    ambiguous = re.search(r"Ambiguous value for argument '([^=']+)=([^']*)'", text)
    if ambiguous:  # a comma list without -m
        return str(ConfigError(ambiguous.group(1), ambiguous.group(2), "several values make a sweep: add -m "
                               "(gdexp -m ...; from Python, gdexp.sweep), or give one value"))
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
    return first


def _raised_in_hydra(exc: BaseException) -> bool:
    """Whether Hydra's own code raised `exc` (a ValueError about its flags: ``-m --info``)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and f"{os.sep}hydra{os.sep}" in tb.tb_frame.f_code.co_filename


def _override_holding(argv: list[str], text: str) -> str | None:
    """The KEY=VALUE argument whose value holds `text` (what Hydra's parser quoted back)."""
    return next((a for a in argv if "=" in a and text and text in a.partition("=")[2]), None)


def _valid_keys(key: str, given: dict[str, str]) -> str:
    """'valid keys of SECTION: ...' for the section holding `key`: the schema's fields for the
    fixed sections, the chosen option's keys (conf/GROUP/OPTION.yaml) for loss and optimizer."""
    from dataclasses import fields

    import yaml
    from omegaconf import OmegaConf

    from gdexp.core.stopping import StoppingConfig
    from gdexp.hydra.paths import conf_dir
    from gdexp.hydra.schema import TOP_LEVEL
    from gdexp.tracking.config import TrackingConfig

    section = key.rsplit(".", 1)[0] if "." in key else ""
    fixed = {"": list(TOP_LEVEL), "stopping": [f.name for f in fields(StoppingConfig)],
             "tracking": [f.name for f in fields(TrackingConfig)]}
    if section in fixed:
        return f"valid keys{' of ' + section if section else ''}: {', '.join(fixed[section])}"
    defaults = yaml.safe_load((conf_dir() / "config.yaml").read_text())["defaults"]
    chosen = given.get(section) or next((d[section] for d in defaults if isinstance(d, dict) and section in d), None)
    # A sweep over options (optimizer=gd,adam, or choice(gd,adam)): the first one without the key.
    options = re.sub(r"^\w+\((.*)\)$", r"\1", str(chosen or "")).split(",")
    for option in (o.strip() for o in options):
        path = conf_dir() / section / f"{option}.yaml"
        keys = [k for k in OmegaConf.load(path) if k not in ("_target_", "defaults")] if option and path.is_file() else None
        if keys is not None and key.rsplit(".", 1)[-1] not in keys:
            return f"valid keys of {section}={option}: {', '.join(keys) or 'none'}"
    # Hydra's own keys (hydra.sweeper.*, hydra.launcher.*) are in Hydra's config, not the job's.
    return f"see `gdexp --cfg {'hydra' if key.startswith('hydra.') else 'job'}` for the valid keys"


def _literal(text: str):
    """A command-line value as the number, bool or list it spells (for messages), else the text."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _article(kind: str) -> str:
    words = {"Integer": "an integer", "Float": "a number", "Boolean": "true or false", "String": "a string"}
    return words.get(kind, kind)


if __name__ == "__main__":  # python -m gdexp.commands.main, as the console script
    main()
