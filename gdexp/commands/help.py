"""`gdexp --help`: what a user can type, read from conf/ and sweeps/ (no Hydra import: it is instant)."""
from __future__ import annotations

from pathlib import Path

from gdexp.hydra.paths import conf_dir

# conf/plugins picks gdexp's sweeper and launcher: Hydra's business, not a user's choice.
INTERNAL_GROUPS = ("plugins",)

_USAGE = """\
gdexp: gradient-descent experiments, configured by Hydra, recorded in MLflow.

Usage:
  gdexp [KEY=VALUE ...]                one run
  gdexp -m KEY=V1,V2 [KEY=VALUE ...]   a sweep: one MLflow run per combination
  gdexp +sweep=NAME [KEY=VALUE ...]    a named sweep (below)
  gdexp COMMAND --help                 the other commands (below)

Grids in a sweep: KEY='logspace(1e-4,1,13)' (= geomspace), 'linspace(0,1,5)',
'range(0.1,1,0.1)', also inside sort(...) and shuffle(...).
Choose an option with GROUP=OPTION, set a key with GROUP.KEY=VALUE.
`gdexp --cfg job [...]` prints the config a run would use; `gdexp --hydra-help` Hydra's own help.
Invalid input: one line `gdexp: error: KEY=VALUE: reason`, exit status 2, no run created.
Successive halving in a sweep: stopping.prune=halving keeps the best 1/stopping.prune_eta (3) of
each group's learning rates at steps stopping.prune_min_steps (100) x eta^k; the others end `pruned`.

Launchers (hydra/launcher=NAME): gdexp (default: vectorized batches in one process), basic
(one job at a time), joblib (hydra.launcher.n_jobs processes); ray needs
`pip install 'gdexp[ray]'`, submitit_local and submitit_slurm `pip install 'gdexp[slurm]'`."""


def help_text(commands: dict[str, tuple[str, str]], argv: list[str] = ()) -> str:
    """The whole help: usage, the config groups with their options and keys, sweeps, commands.

    Args:
        commands: the other commands, name -> (module, what it does) (gdexp.commands.main.SUBCOMMANDS).
        argv: the rest of the command line: the folders of a ``hydra.searchpath=[...]`` there
            add their options (``myconf/optimizer/heavy.yaml``: optimizer=heavy).
    """
    from gdexp.hydra.named_sweeps import describe

    extra = search_path(argv)
    parts = [_USAGE, "", "== Config groups (GROUP=OPTION; default first) =="]
    for group in user_groups():
        parts.append(_group_line(group, extra))
    parts += ["", "== Named sweeps (gdexp +sweep=NAME) =="]
    parts += [f"  gdexp +sweep={name:<16} {line}" for name, line in describe()]
    parts += ["", "== Other commands =="]
    parts += [f"  gdexp {name + ' --help':<16} {what}" for name, (_, what) in commands.items()]
    return "\n".join(parts)


def user_groups() -> list[str]:
    """The config groups a user chooses from, in the order of conf/config.yaml's defaults."""
    return [group for group in _defaults() if group not in INTERNAL_GROUPS and (conf_dir() / group).is_dir()]


def search_path(argv) -> list[Path]:
    """The folders of ``hydra.searchpath=[file://a,pkg://b.c]`` in `argv` (Hydra's own syntax;
    a pkg:// entry is the package's folder), those that exist.

    >>> search_path(["loss=booth"])
    []
    """
    import importlib.util

    folders = []
    for arg in argv:
        key, _, value = arg.partition("=")
        if key.lstrip("+") != "hydra.searchpath":
            continue
        for entry in value.strip().strip("[]").split(","):
            entry = entry.strip().strip("'\"")
            if entry.startswith("file://"):
                folders.append(Path(entry[len("file://"):]))
            elif entry.startswith("pkg://"):
                try:
                    spec = importlib.util.find_spec(entry[len("pkg://"):].replace("/", "."))
                except (ImportError, ValueError):
                    spec = None
                if spec is not None and spec.submodule_search_locations:
                    folders.append(Path(list(spec.submodule_search_locations)[0]))
    return [f for f in folders if f.is_dir()]


def _group_line(group: str, extra: list[Path] = ()) -> str:
    import yaml

    folder = conf_dir() / group
    default = _default_option(group)
    found = {p.stem for p in folder.glob("*.yaml")} | {p.stem for f in extra for p in (f / group).glob("*.yaml")}
    options = sorted(found, key=lambda o: (o != default, o))
    lines = [f"  {group}: {', '.join(options)}"]
    keys = [k for k in (yaml.safe_load(Path(folder / f"{default}.yaml").read_text()) or {})
            if k not in ("_target_", "defaults")]
    if keys:
        lines.append(f"      keys of {group}={default}: {', '.join(keys)}")
    return "\n".join(lines)


def _default_option(group: str) -> str:
    return _defaults()[group]


def _defaults() -> dict[str, str]:
    """conf/config.yaml's defaults list as {group: option}."""
    import yaml

    defaults = yaml.safe_load((conf_dir() / "config.yaml").read_text())["defaults"]
    return {k: v for d in defaults if isinstance(d, dict) for k, v in d.items()}
