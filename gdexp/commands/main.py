"""The `gdexp` command: `report`, `compare`, `rerun`, `resume` dispatched first; the rest is Hydra's app.

Every input gdexp refuses ends in one line, ``gdexp: error: KEY=VALUE: reason``,
and exit status 2 (gdexp.core.errors.EXIT_INVALID_INPUT), before any MLflow run
exists: gdexp's own checks and Hydra's composition errors alike.
"""
from __future__ import annotations

import gc
import os
import re
import sys

from gdexp.core.errors import ConfigError, exit_invalid

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
        sys.exit(getattr(module, "compare_main" if argv[0] == "compare" else "main")(argv[1:]))
    if "--help" in argv or "-h" in argv:
        from gdexp.commands.help import help_text

        print(help_text(SUBCOMMANDS, [a for a in argv if a not in ("--help", "-h")]))
        return
    run_hydra(argv)


def run_hydra(argv: list[str]) -> None:
    """Hydra's app on `argv` (overrides and Hydra's flags), errors as one line."""
    from gdexp.hydra.argv import prepare
    from gdexp.tracking.provenance import set_command

    set_command(argv)  # as typed, before the grids are expanded
    try:
        hydra_argv = prepare(argv)
    except ConfigError as exc:
        exit_invalid(exc)
    import hydra

    from gdexp.hydra.named_sweeps import register_sweeps
    from gdexp.hydra.paths import conf_dir
    from gdexp.hydra.schema import register_configs

    register_configs()
    register_sweeps()
    app = hydra.main(config_path=str(conf_dir()), config_name="config", version_base=None)(_task)
    saved_argv, saved_full = sys.argv, os.environ.get("HYDRA_FULL_ERROR")
    # Hydra reads sys.argv itself; with HYDRA_FULL_ERROR its errors reach us as exceptions.
    sys.argv = [saved_argv[0] if saved_argv else "gdexp", *hydra_argv]
    os.environ["HYDRA_FULL_ERROR"] = "1"
    from gdexp.tracking import interrupts
    from gdexp.tracking.writes import close_open_runs, runs_created

    created = runs_created()
    try:
        with interrupts.handled():  # SIGTERM stops gdexp as Ctrl-C does
            app()
    except KeyboardInterrupt as exc:
        # The run in flight is marked KILLED, if the interrupt came before the code that does it.
        # (A sweep says more and exits itself.)
        close_open_runs()
        what = ("the run in flight is marked KILLED" if runs_created() > created
                else "before its MLflow run was created: nothing recorded")
        print(f"gdexp: interrupted ({interrupts.name(exc)}); {what}", file=sys.stderr)
        sys.exit(interrupts.exit_status(exc))
    except ConfigError as exc:
        exit_invalid(exc)
    except Exception as exc:
        message = hydra_error(exc, argv)
        if message is None:
            raise
        exit_invalid(message)
    finally:
        sys.argv = saved_argv
        if saved_full is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = saved_full


def _task(cfg) -> dict:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from gdexp.hydra.task import task

    try:
        return task(cfg)
    except ConfigError as exc:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # a job of a sweep: the sweep reports it
        exit_invalid(exc)  # out of Hydra's job runner without its "Error executing job" lines
    except Exception as exc:  # OmegaConf's, resolving the config (an interpolation ${...}): the user's input
        message = hydra_error(exc, sys.argv[1:])  # run_hydra set it: the overrides Hydra read
        if message is None or HydraConfig.get().mode == RunMode.MULTIRUN:
            raise
        exit_invalid(message)


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
    return "see `gdexp --cfg job` for the valid keys"


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
