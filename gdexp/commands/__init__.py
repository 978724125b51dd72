"""The commands a user types, on top of every other layer.

- main.py    the `gdexp` console script: report, compare, rerun, resume dispatched, the rest Hydra's app
- help.py    `gdexp --help`, read from conf/ and sweeps/
- api.py     gdexp.run and gdexp.sweep: the command from Python
- report.py, rerun.py, resume.py   the subcommands

A regular package (this file), so that every tool names its modules gdexp.commands.*:
pytest's --doctest-modules imported a folder without one as top-level `main`, `help`, ...
"""
