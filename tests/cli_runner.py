"""Run the real `gdexp` command in-process (imports are paid once per test session)."""
from __future__ import annotations

import sys


def run_cli(*args: str) -> int:
    """gdexp ARGS in this process; returns its exit status (a message exit counts 1)."""
    from hydra.core.global_hydra import GlobalHydra

    from gdexp.cli import main

    GlobalHydra.instance().clear()
    try:
        main(list(args))
        return 0
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
        return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    finally:
        GlobalHydra.instance().clear()
