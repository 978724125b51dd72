"""The layers hold: imports only go down, MLflow stays in gdexp.tracking, the core stays numpy, no cycles.

Imports are read with `ast` from every module of gdexp, function-level ones
included (a cycle or a layer breach cannot hide inside a function); what a
layer pulls in when imported is measured in a fresh interpreter.
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import gdexp

PACKAGE = Path(gdexp.__file__).parent
# Bottom to top: a module may import gdexp modules of its own layer and of the layers before it.
LAYERS = ("core", "specs", "results", "tracking", "hydra", "report", "commands")
# Third-party packages a layer must never import, at any level (ast).
FORBIDDEN = {
    "core": ("hydra", "hydra_plugins", "omegaconf", "mlflow"),
    "specs": ("hydra", "hydra_plugins", "omegaconf", "mlflow"),
    "results": ("hydra", "hydra_plugins", "omegaconf", "mlflow"),
    "tracking": ("hydra", "hydra_plugins", "omegaconf"),
}
# What importing every module of a layer must leave out of sys.modules (a fresh interpreter):
# the core is numpy (pandas only inside the function that reads a CSV), results is pandas,
# tracking imports MLflow inside its functions (`import mlflow` costs most of a second).
NOT_LOADED = {
    "core": ("hydra", "omegaconf", "mlflow", "pandas"),
    "specs": ("hydra", "omegaconf", "mlflow", "pandas", "jax"),
    "results": ("hydra", "omegaconf", "mlflow"),
    "tracking": ("hydra", "omegaconf", "mlflow"),
}


def modules(root: Path = PACKAGE, prefix: str = "gdexp") -> dict[str, tuple[Path, bool]]:
    """Every module under `root` by dotted name: (file, is a package)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = [prefix, *path.relative_to(root).with_suffix("").parts]
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


def imported(name: str, path: Path, is_package: bool) -> list[tuple[str, int]]:
    """(dotted module, line) of every import in a module, at any depth (functions, if-blocks).

    `from a.b import c` counts as a.b.c where that is a module of gdexp's (the
    caller decides), else as a.b; relative imports are resolved against `name`.
    """
    package = name if is_package else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[:len(parts) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            found += [(f"{base}.{alias.name}", node.lineno) for alias in node.names]
            found.append((base, node.lineno))
    return list(dict.fromkeys(found))


def graph(mods: dict[str, tuple[Path, bool]]) -> dict[str, set[str]]:
    """Module -> the gdexp modules it imports (the most specific module each import names)."""
    edges = {}
    for name, (path, is_package) in mods.items():
        targets = set()
        for target, _ in imported(name, path, is_package):
            while target and target not in mods:
                target = target.rpartition(".")[0]
            if target:
                targets.add(target)
        # `from a.b import c` (c a module) names both a.b and a.b.c: keep the most specific.
        edges[name] = {t for t in targets if t != name and not any(o.startswith(t + ".") for o in targets)}
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path [a, b, ..., a], or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for start in sorted(edges):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(edges[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(edges.get(nxt, ()))))
    return None


def layer(name: str) -> str | None:
    """The layer of a module (`gdexp.tracking.store` -> tracking); None for the root package."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else None


MODULES = modules()
GRAPH = graph(MODULES)


# --- the checkers themselves: each one sees what it must -------------------------------------

def test_imports_are_found_inside_functions_and_relative(tmp_path):
    pkg = tmp_path / "gdexp" / "hydra"
    pkg.mkdir(parents=True)
    (pkg.parent / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("import os\n\ndef f():\n    if True:\n        from . import b\n"
                              "    from ..core.spec import plan\n    import mlflow.entities\n")
    (pkg / "b.py").write_text("def g():\n    from gdexp.hydra.a import f\n")
    mods = modules(tmp_path / "gdexp")
    names = {n for n, _ in imported("gdexp.hydra.a", *mods["gdexp.hydra.a"])}
    assert {"os", "gdexp.hydra.b", "gdexp.core.spec.plan", "mlflow.entities"} <= names
    edges = graph(mods)
    assert edges["gdexp.hydra.a"] == {"gdexp.hydra.b"}  # gdexp.core is not in this tree
    assert find_cycle(edges) == ["gdexp.hydra.a", "gdexp.hydra.b", "gdexp.hydra.a"]


def test_find_cycle_on_a_longer_loop_and_on_none():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"d", "a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


# --- the rules ----------------------------------------------------------------------------

def test_every_module_belongs_to_a_layer():
    """Nothing but the root package (the API, imported lazily) sits beside the layers."""
    stray = [n for n in MODULES if n != "gdexp" and layer(n) not in LAYERS]
    assert stray == [], f"modules outside the layers {LAYERS}: {stray}"


def test_the_root_package_imports_nothing_at_load_time():
    """`import gdexp` stays instant: its public names are imported on first use (gdexp._LAZY)."""
    tree = ast.parse(MODULES["gdexp"][0].read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert top == []


def test_imports_only_go_down():
    breaches = [f"{name} ({layer(name)}) imports {target} ({layer(target)})"
                for name, targets in GRAPH.items() for target in targets
                if layer(name) and layer(target) and LAYERS.index(layer(target)) > LAYERS.index(layer(name))]
    assert breaches == []


def test_the_core_imports_no_other_gdexp_layer():
    """Said outright for the layer every other one builds on (test_imports_only_go_down implies it)."""
    out = sorted({t for n, ts in GRAPH.items() if layer(n) == "core" for t in ts if layer(t) not in ("core", None)})
    assert out == []


@pytest.mark.parametrize("name", sorted(FORBIDDEN))
def test_layer_never_imports_a_framework_above_it(name):
    found = [f"{mod}:{line} imports {target}"
             for mod, (path, is_package) in MODULES.items() if layer(mod) == name
             for target, line in imported(mod, path, is_package)
             if target.split(".")[0] in FORBIDDEN[name]]
    assert found == []


def test_mlflow_is_imported_only_by_gdexp_tracking():
    found = [f"{mod}:{line} imports {target}"
             for mod, (path, is_package) in MODULES.items() if layer(mod) != "tracking"
             for target, line in imported(mod, path, is_package) if target.split(".")[0] == "mlflow"]
    assert found == []


def test_no_import_cycle():
    assert find_cycle(GRAPH) is None, " -> ".join(find_cycle(GRAPH))


@pytest.mark.parametrize("name", sorted(NOT_LOADED))
def test_importing_a_layer_loads_no_framework_above_it(name):
    """Every module of the layer imported in a fresh interpreter (one per layer)."""
    script = (
        "import importlib, json, pkgutil, sys\n"
        f"import gdexp.{name} as layer\n"
        "names = [m.name for m in pkgutil.walk_packages(layer.__path__, layer.__name__ + '.')]\n"
        "for n in names:\n"
        "    importlib.import_module(n)\n"
        f"print(json.dumps([names, [m for m in {list(NOT_LOADED[name])!r} if m in sys.modules]]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(PACKAGE.parent)})
    assert done.returncode == 0, done.stderr
    names, loaded = json.loads(done.stdout.splitlines()[-1])
    expected = sorted(n for n in MODULES if layer(n) == name and n != f"gdexp.{name}")
    assert sorted(names) == expected  # every module was imported, none skipped
    assert loaded == [], f"importing gdexp.{name} loads {loaded}"


# --- process control lives at the top ----------------------------------------------------------

def exits_and_prints(name: str) -> list[str]:
    """Calls of print() and sys.exit()/exit()/os._exit(), and raising SystemExit, in a module (ast).
    (Catching SystemExit is allowed: a user's module that exits while being imported is refused in one line.)"""
    path, _ = MODULES[name]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name) and f.id in ("print", "exit", "quit"):
                found.append(f"{name}:{node.lineno} calls {f.id}()")
            elif isinstance(f, ast.Attribute) and f.attr in ("exit", "_exit") and isinstance(f.value, ast.Name) \
                    and f.value.id in ("sys", "os"):
                found.append(f"{name}:{node.lineno} calls {f.value.id}.{f.attr}()")
        elif isinstance(node, ast.Raise) and node.exc is not None:
            raised = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(raised, ast.Name) and raised.id == "SystemExit":
                found.append(f"{name}:{node.lineno} raises SystemExit")
    return found


def test_the_exit_check_sees_prints_exits_and_system_exit(tmp_path, monkeypatch):
    bad = tmp_path / "bad.py"
    bad.write_text("import sys\n\ndef f():\n    print('x')\n    sys.exit(1)\n\ndef g():\n"
                   "    raise SystemExit(2)\n\ndef h():\n    try:\n        pass\n    except SystemExit:\n        pass\n\n'''>>> print(1)'''\n")
    monkeypatch.setitem(MODULES, "gdexp.tracking.bad", (bad, False))
    assert sorted(exits_and_prints("gdexp.tracking.bad")) == ["gdexp.tracking.bad:4 calls print()",
                                                      "gdexp.tracking.bad:5 calls sys.exit()",
                                                      "gdexp.tracking.bad:8 raises SystemExit"]


# The one process exit below the commands, and why: not a command's status but a worker ending itself.
EXIT_EDGES = {
    "gdexp.hydra.launchers.orphans": "a launcher's worker whose sweep process is gone ends itself at once "
                                     "(os._exit, as the kernel's parent-death SIGKILL would: no cleanup, no write)",
}


def test_only_the_commands_print_and_exit():
    """Below gdexp.commands every layer raises typed errors and logs to the `gdexp` logger; the commands
    alone print lines and choose exit statuses (gdexp.commands.exits). Doctest examples are text, not calls."""
    found = [use for name in MODULES if layer(name) not in ("commands", None) for use in exits_and_prints(name)
             if not (name in EXIT_EDGES and "_exit()" in use)]
    assert found == []


def test_every_named_exit_edge_exists_and_exits():
    for name in EXIT_EDGES:
        assert any("os._exit()" in use for use in exits_and_prints(name)), name
