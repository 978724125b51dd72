"""The `gdexp` command: Hydra's app, with `report`, `rerun` and `resume` dispatched first."""
from __future__ import annotations

import sys

from gdexp.core.errors import ConfigError


def main(argv: list[str] | None = None) -> None:
    """`gdexp report|rerun|resume ...` have their own parsers; the rest is Hydra's."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["report"]:
        from gdexp.report import main as report_main

        sys.exit(report_main(argv[1:]))
    if argv[:1] == ["rerun"]:
        from gdexp.rerun import main as rerun_main

        sys.exit(rerun_main(argv[1:]))
    if argv[:1] == ["resume"]:
        from gdexp.resume import main as resume_main

        sys.exit(resume_main(argv[1:]))
    from gdexp.grids import expand
    from gdexp.sweeprun import remember_command

    remember_command(argv)  # as typed, before the grids are expanded
    # Hydra reads sys.argv itself, and its grammar has no logspace/linspace.
    sys.argv = [sys.argv[0], *(expand(a) for a in argv)]
    try:
        _run_hydra()
    finally:  # Hydra's --help exits by itself
        if "--help" in argv or "-h" in argv:
            print(_commands_help())


def _commands_help() -> str:
    """What Hydra's help does not know: gdexp's subcommands and named sweeps."""
    from gdexp.sweeps import describe

    sweeps = "\n".join(f"  gdexp +sweep={name:<16} {line}" for name, line in describe())
    return ("== Named sweeps ==\n" + sweeps + "\n\n== Other commands ==\n"
            "  gdexp report --help     a sweep's report (html + md, figures)\n"
            "  gdexp rerun --help      re-execute runs from their logged config, compare curves\n"
            "  gdexp resume --help     record runs kept on disk while the store was down")


def task(cfg) -> dict:
    """Hydra's task function: a config error is one readable line, exit status 2."""
    from gdexp.app import run_one

    try:
        return run_one(cfg)
    except ConfigError as exc:
        print(f"gdexp: error: {exc}", file=sys.stderr)
        sys.exit(2)


def _run_hydra() -> None:
    import hydra

    from gdexp.config import register_configs
    from gdexp.paths import conf_dir
    from gdexp.sweeps import register_sweeps

    register_configs()
    register_sweeps()
    app = hydra.main(config_path=str(conf_dir()), config_name="config", version_base=None)(task)
    try:
        app()
    except KeyboardInterrupt:
        # The run in flight and its sweep's parent are already marked KILLED.
        sys.exit(130)
