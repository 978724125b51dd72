"""Config ``_target_`` paths: import what they name, check the keywords for it, decide whether to trust it.

A ``_target_`` such as ``mypkg.losses.saddle`` names code in the user's
folder; gdexp imports it as if that folder were on ``sys.path`` (the folder
gdexp was started in, which launchers pass on to their workers). Every
failure is one ``ConfigError`` line naming the key, the path and what went
wrong, never a traceback.

Importing a module runs its code, so configs read back from a store written
by someone else (``gdexp rerun``, ``gdexp report``, ``load_runs``) go through
``check_allowed`` first: it decides from the path alone, importing nothing
outside gdexp, and refuses a module the user did not name with
``--allow-module``.

Standard library only: the Hydra layer and the commands use it before any
numpy work starts.
"""
# Kept whole (over ~300 lines): importing a _target_, checking and trusting it walk one dotted path.
from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import inspect
import os
import pkgutil
import sys
import traceback
from pathlib import Path

from gdexp.core.errors import ConfigError

# What a stored config may name without --allow-module: classes and functions
# of gdexp's numpy core, which compute and read their own data files but never
# touch the store or import code by name ...
TRUSTED_PACKAGE = "gdexp.core"
# ... and gdexp's loss=torch, which lives in this layer because it imports the user's network by
# name: the target itself is gdexp's; its user-code keys (loss.model, data, criterion) are checked
# on their own (gdexp.tracking.reader.user_code, check_allowed).
TRUSTED_MODULES = ("gdexp.specs.torch_loss",)
# ... except these, which import a module named by their arguments.
_IMPORTERS_BY_NAME = ("gdexp.specs.targets", "gdexp.specs.user_loss")

# The optional extra that brings a module gdexp users commonly miss.
_EXTRAS = {"jax": "gdexp[jax]"}


def resolve(path: str, key: str, search_dir: str | Path | None) -> object:
    """The object a dotted path names: its longest importable module prefix, then attributes.

    ``search_dir`` is first on ``sys.path`` while the target's module is
    imported, so the user's ``mypkg/`` wins over an installed package of
    that name (what they see in their folder is what runs), unless a module
    of that name was imported already (an error then says where from). It then stays
    on ``sys.path``, last, for good: code the target imports later (a
    helper imported inside the function, classes of it unpickled in this
    process) still finds the folder, while gdexp's own lazy imports
    (mlflow, matplotlib, optuna) can never be shadowed by a stray
    ``optuna.py`` there. Hydra's ``_locate`` walks paths the same way.

    Args:
        path: ``"pkg.mod.attr"``: a module, then attributes (a class method
            or a nested attribute is fine: ``"pkg.mod.Class.attr"``).
        key: the config key for error messages, e.g. ``"loss._target_"``.
        search_dir: the folder gdexp was started in (relative paths are
            made absolute now: Hydra jobs may change the working folder), or
            None to search ``sys.path`` only.

    Returns:
        The named object; it is callable.

    Raises:
        ConfigError: one line each for: not a dotted path; module not found
            (naming it and where gdexp looked); the module raised on import
            (the exception and its line in the user's file); attribute
            missing (with the nearest names); not callable.

    >>> resolve("gdexp.core.losses.Rosenbrock", "loss._target_", None).name
    'rosenbrock'
    >>> resolve("gdexp.core.losses.Rosenbrok", "loss._target_", None)
    Traceback (most recent call last):
    ...
    gdexp.core.errors.ConfigError: loss._target_='gdexp.core.losses.Rosenbrok': package gdexp.core.losses has no module or attribute 'Rosenbrok'; did you mean: Rosenbrock
    """
    parts = _dotted_parts(path, key)
    prefer_float64_in_jax()  # before the user's module runs: its import-time arrays are float64 too
    folder = None if search_dir is None else str(Path(search_dir).resolve())
    obj = _import_top(parts[0], path, key, folder)
    obj = _walk(obj, parts, path, key, folder, may_enter=lambda module: True)
    if not callable(obj):
        raise ConfigError(key, path, f"is {_a(obj)}, not callable: name a function or a class")
    return obj


def prefer_float64_in_jax() -> None:
    """Make JAX compute in float64 in this process, before any user module is imported.

    Then arrays a module creates at import time (``C = jnp.array([...])``)
    are float64 too. JAX reads JAX_ENABLE_X64 when it is first imported; where
    something imported it already, its config flag is set instead (the flag is
    process-wide: `gdexp.run` turns it on for the calling process).
    """
    jax = sys.modules.get("jax")
    if jax is None:
        os.environ["JAX_ENABLE_X64"] = "True"
    elif hasattr(jax, "config"):
        jax.config.update("jax_enable_x64", True)


def check_kwargs(target, kwargs: dict, key_prefix: str = "loss", *, n_positional: int = 0) -> None:
    """Check config keywords against a target's signature before calling it.

    A class is checked against its ``__init__`` (a dataclass: its fields).
    A target taking ``**kwargs`` accepts any key; its required parameters
    must still be given.

    Args:
        target: the function or class the keywords are for.
        kwargs: config key (without prefix) -> value.
        key_prefix: config group the keys live under, for error messages.
        n_positional: leading parameters gdexp passes itself, never from
            the config (1 for a loss function's ``x``).

    Raises:
        ConfigError: an unknown key (listing the valid ones), or a required
            parameter without a value.

    >>> def saddle(x, scale, tilt=0.0): ...
    >>> check_kwargs(saddle, {"scale": 3, "tlt": 1}, n_positional=1)
    Traceback (most recent call last):
    ...
    gdexp.core.errors.ConfigError: loss.tlt=1: not a parameter of saddle; its parameters are: scale, tilt
    """
    try:
        params = list(inspect.signature(target).parameters.values())[n_positional:]
    except (TypeError, ValueError):  # some builtins have no signature: nothing to check
        return
    by_keyword = [p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    names = [p.name for p in by_keyword]
    if not any(p.kind == p.VAR_KEYWORD for p in params):
        for name, value in kwargs.items():
            if name not in names:
                valid = ", ".join(names) or "none"
                raise ConfigError(f"{key_prefix}.{name}", value,
                                  f"not a parameter of {_name(target)}; its parameters are: {valid}")
    for p in params:
        required = p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        if required and p.name not in kwargs:
            how = ("is positional-only and cannot come from a config" if p.kind == p.POSITIONAL_ONLY
                   else f"has no default; set {key_prefix}.{p.name}=VALUE")
            raise ConfigError(f"{key_prefix}.{p.name}", None, f"required by {_name(target)}, {how}")


def source_sha256(target) -> str | None:
    """SHA-256 (hex) of the source file that defines a function or class, or None.

    Goes into a run's config hash, so editing the file makes ``gdexp rerun``
    refuse to reproduce the run with different code. Only the defining file
    counts: a helper module it imports can change unnoticed.

    Returns:
        None for objects without a Python source file (builtins, C extensions,
        code typed into a REPL).

    >>> source_sha256(len) is None
    True
    """
    target = inspect.unwrap(_unpartial(target))
    if not (inspect.isclass(target) or inspect.isroutine(target) or inspect.ismodule(target)):
        target = type(target)  # a callable instance: its class's file
    try:
        file = inspect.getsourcefile(target)
    except TypeError:
        return None
    if file is None or not Path(file).is_file():
        return None
    return hashlib.sha256(Path(file).read_bytes()).hexdigest()


def is_gdexp_target(path: str) -> bool:
    """Whether a path names a class or function defined in gdexp's numpy core.

    Such a target is trusted in a config from any store. Deciding imports
    gdexp modules only: the walk stops at the first object that is a module
    outside gdexp (``gdexp.core.losses.base.np.save`` is numpy's, and would
    write a file), and the object found must be defined in ``gdexp.core``
    outside the modules that import code by name (``gdexp.specs.targets``,
    ``gdexp.specs.user_loss``). Private names (``_x``) are never trusted.

    >>> is_gdexp_target("gdexp.core.losses.Rosenbrock")
    True
    >>> is_gdexp_target("gdexp.core.losses.base.np.save")
    False
    >>> is_gdexp_target("mypkg.losses.saddle")
    False
    >>> is_gdexp_target("gdexp.specs.torch_loss.torch_module"), is_gdexp_target("gdexp.specs.targets.resolve")
    (True, False)
    """
    if not isinstance(path, str) or not _is_dotted(path) or \
            not any(path.startswith(p + ".") for p in (TRUSTED_PACKAGE, *TRUSTED_MODULES)):
        return False
    parts = path.split(".")
    if any(part.startswith("_") for part in parts):
        return False
    try:
        obj = _walk(importlib.import_module("gdexp"), parts, path, "_target_", None,
                    may_enter=lambda module: _within(module.__name__, "gdexp"))
    except ConfigError:
        return False
    module = getattr(obj, "__module__", None)
    return ((inspect.isclass(obj) or inspect.isfunction(obj)) and isinstance(module, str)
            and (_within(module, TRUSTED_PACKAGE) or module in TRUSTED_MODULES)
            and not any(_within(module, m) for m in _IMPORTERS_BY_NAME))


def check_allowed(path: str, allow_modules: list[str], key: str) -> None:
    """Refuse a target from a stored config unless it is gdexp's or the user allowed its module.

    For configs gdexp did not just compose from the user's own command line
    (``gdexp rerun``, ``gdexp report``, ``load_runs``), before anything is
    resolved. It never imports a module outside gdexp.

    Args:
        path: the stored ``_target_``.
        allow_modules: the ``--allow-module`` values: a top-level module
            (``mypkg``) allows everything in it, a dotted one
            (``mypkg.losses``) only what is inside it.
        key: the config key, e.g. ``"loss._target_"``.

    Raises:
        ConfigError: a path outside gdexp's core whose module is not allowed
            (naming ``--allow-module <top-level module>``), or a malformed
            ``--allow-module`` value.

    >>> check_allowed("gdexp.core.losses.Rosenbrock", [], "loss._target_")
    >>> check_allowed("mypkg.losses.saddle", ["mypkg"], "loss._target_")
    >>> check_allowed("mypkg.losses.saddle", [], "loss._target_")
    Traceback (most recent call last):
    ...
    gdexp.core.errors.ConfigError: loss._target_='mypkg.losses.saddle': a stored config naming code outside gdexp; it is imported only if you trust it: pass --allow-module mypkg
    """
    for module in allow_modules:
        if not isinstance(module, str) or not all(p.isidentifier() for p in module.split(".")):
            raise ConfigError("--allow-module", module, "not a module name like mypkg or mypkg.losses")
    if is_gdexp_target(path):
        return
    if path == "???" or not isinstance(path, str) or not _is_dotted(path):
        _dotted_parts(path, key)  # its line: required, or not a dotted path
    if any(_within(path, module) for module in allow_modules):
        return
    top = path.split(".")[0]
    if top == "gdexp":
        raise ConfigError(key, path, f"not a class or function of {TRUSTED_PACKAGE}, so not trusted in a "
                                     "stored config; pass --allow-module gdexp to trust it")
    raise ConfigError(key, path, "a stored config naming code outside gdexp; it is imported only if you "
                                 f"trust it: pass --allow-module {top}")


def describe_exception(error: BaseException, prefer_file: str | None = None) -> str:
    """``"ValueError: message (file.py, line 7)"``: one line about an exception in user code.

    The line is the innermost frame in ``prefer_file`` if the traceback passes
    through it, else the innermost frame outside importlib's machinery; the
    message is its first line, cut at 200 characters.
    """
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if len(first) > 200:
        first = first[:197] + "..."
    text = f"{type(error).__name__}: {first}" if first else type(error).__name__
    where = _where(error, prefer_file)
    return f"{text} ({where})" if where else text


def _where(error: BaseException, prefer_file: str | None) -> str | None:
    if isinstance(error, SyntaxError) and error.filename:  # its frame is the parser's, not the file's
        return f"{error.filename}, line {error.lineno}"
    frames = [f for f in traceback.extract_tb(error.__traceback__) if not f.filename.startswith("<frozen")]
    if prefer_file is not None:
        preferred = [f for f in frames if f.filename == prefer_file]
        frames = preferred or frames
    if not frames:
        return None
    return f"{frames[-1].filename}, line {frames[-1].lineno}"


def _dotted_parts(path, key: str) -> list[str]:
    if path == "???":  # OmegaConf's mark of a value the config leaves to the command line
        raise ConfigError(key, path, f"is required: give {key}=mypkg.module.name")
    if not isinstance(path, str) or not _is_dotted(path):
        raise ConfigError(key, path, "not a dotted path like mypkg.losses.saddle "
                                     "(a module, dots, then the function or class; no .py, no slashes)")
    return path.split(".")


def _is_dotted(path: str) -> bool:
    parts = path.split(".")
    return len(parts) >= 2 and all(p.isidentifier() for p in parts)


def _import_top(name: str, path: str, key: str, folder: str | None):
    """Import the path's top-level module with `folder` first on sys.path (see resolve)."""
    if folder is not None:
        sys.path.insert(0, folder)
    # Files written since the interpreter started (a test's tmp_path, a user
    # editing in another window) are invisible to the cached folder listings.
    # Not for gdexp's own targets (no file of them appears while gdexp runs): the
    # invalidation costs ~0.1 ms, paid for each section of each job of a sweep.
    if not path.startswith("gdexp."):
        importlib.invalidate_caches()
    try:
        return _import(name, path, key, folder)
    finally:
        if folder is not None:
            sys.path.remove(folder)  # the copy inserted above: remove() takes the first
            if folder not in sys.path:
                sys.path.append(folder)


def _import(module: str, path: str, key: str, folder: str | None):
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name == module:
            where = f"{folder} (the folder gdexp was started in) or sys.path" if folder else "sys.path"
            raise ConfigError(key, path, f"module {module!r} not found in {where}") from None
        raise ConfigError(key, path, _import_failure(module, error)) from None
    except (Exception, SystemExit) as error:  # the user's module raised while being imported
        raise ConfigError(key, path, _import_failure(module, error)) from None


def _import_failure(module: str, error: BaseException) -> str:
    reason = f"importing {module} raised {describe_exception(error, _module_file(module))}"
    missing = getattr(error, "name", None) if isinstance(error, ModuleNotFoundError) else None
    if missing is not None and missing.split(".")[0] in _EXTRAS:
        reason += f"; pip install '{_EXTRAS[missing.split('.')[0]]}'"
    return reason


def _module_file(module: str) -> str | None:
    """The file a module would be imported from, without importing it (for error lines)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    return None if spec is None else spec.origin


def _walk(obj, parts: list[str], path: str, key: str, folder: str | None, may_enter) -> object:
    """Follow parts[1:] from the top-level module: attributes, or submodules not yet imported."""
    module_name = parts[0]
    for i, part in enumerate(parts[1:], start=1):
        is_module = inspect.ismodule(obj)
        if is_module and not may_enter(obj):
            raise ConfigError(key, path, f"passes through module {obj.__name__}")
        if hasattr(obj, part):
            obj = getattr(obj, part)
        elif is_module and hasattr(obj, "__path__"):  # a package: maybe a submodule not imported yet
            submodule = f"{obj.__name__}.{part}"
            if _module_file(submodule) is None:
                raise ConfigError(key, path, _missing(obj, part, f"package {module_name}", folder))
            obj = _import(submodule, path, key, folder)
        else:
            owner = f"module {module_name}" if is_module else ".".join(parts[:i])
            raise ConfigError(key, path, _missing(obj, part, owner, folder))
        module_name = f"{module_name}.{part}"
    return obj


def _missing(obj, name: str, owner: str, folder: str | None) -> str:
    names = [n for n in dir(obj) if not n.startswith("_")]
    if inspect.ismodule(obj) and hasattr(obj, "__path__"):
        names += [m.name for m in pkgutil.iter_modules(obj.__path__)]
    names = sorted(set(names))
    near = difflib.get_close_matches(name, names, n=3)
    if near:
        hint = "did you mean: " + ", ".join(near)
    elif names:
        hint = "it has: " + ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
    else:
        hint = "it defines no public names"
    what = "module or attribute" if inspect.ismodule(obj) and hasattr(obj, "__path__") else "attribute"
    reason = f"{owner} has no {what} {name!r}; {hint}"
    file = getattr(obj, "__file__", None) if inspect.ismodule(obj) else None
    if folder is not None and file and not Path(file).resolve().is_relative_to(folder):
        # An installed package or an earlier import of the same name shadows the user's folder.
        reason += f"; note: it was loaded from {file}, not from {folder}"
    return reason


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _unpartial(target):
    while hasattr(target, "func") and hasattr(target, "keywords"):  # functools.partial
        target = target.func
    return target


def _name(target) -> str:
    target = _unpartial(target)
    return getattr(target, "__qualname__", None) or getattr(target, "__name__", None) or type(target).__name__


def _a(obj) -> str:
    kind = type(obj).__name__
    return f"an {kind}" if kind[:1].lower() in "aeiou" else f"a {kind}"
