"""A loss from the user's own module: a Loss subclass, or a scalar function differentiated by JAX.

``gdexp loss=custom loss._target_=mypkg.losses.saddle loss.dim=2 loss.scale=3``
builds ``user_loss("mypkg.losses.saddle", start_folder, dim=2, scale=3)``:

- a class on ``gdexp.core.losses.base.Loss`` (numpy, no JAX) is instantiated
  with the keywords and used as it is, behind a thin wrapper (``UserLoss``);
- a plain function ``f(x, **kwargs) -> scalar`` written with ``jax.numpy``
  (``x`` of shape ``(dim,)``) becomes a ``JaxLoss``: JAX's exact gradient,
  compiled, in float64, over the batch of runs.

Both are probed once at build time (``probe_loss``) so a wrong shape, a
non-float value or a start point where the loss is not finite is one
``ConfigError`` line before any run exists. Both pickle as their target path
and keywords and rebuild themselves on unpickling, so launcher workers
import the target from the start folder too.

JAX is imported only for the function form (``pip install 'gdexp[jax]'``).
"""
from __future__ import annotations

import functools
import inspect
from pathlib import Path

import numpy as np

from gdexp.core.errors import ConfigError
from gdexp.core.losses.base import Loss
from gdexp.specs.targets import check_kwargs, describe_exception, prefer_float64_in_jax, resolve, source_sha256

KEY = "loss._target_"


def user_loss(target: str, search_dir: str | Path | None, /, dim: int | None = None, **kwargs) -> Loss:
    """The loss a config's ``loss._target_`` names, built, checked and probed.

    Args:
        target: dotted path of a Loss subclass or a scalar function
            (``gdexp.specs.targets.resolve``).
        search_dir: the folder gdexp was started in; the target is imported
            as if it were on ``sys.path``. Workers get it from the launcher.
        dim: ``loss.dim``. A function needs it (or an ``init`` attribute to
            take it from) and may also name ``dim`` as a parameter to receive
            it; a class receives it as a keyword if its signature has one,
            else it must match the class's own ``dim``.
        **kwargs: the other ``loss.*`` keys, for the target, checked against
            its signature.

    Returns:
        ``UserLoss`` for a class, ``JaxLoss`` for a function. Their start
        (``default_init``) is the target's own (a class's ``default_init()``,
        a function's ``init`` attribute), else the origin.

    Raises:
        ConfigError: one line for each way the target cannot make a loss (see
            ``resolve``, ``check_kwargs``, ``probe_loss``; JAX missing for a
            function, naming ``pip install 'gdexp[jax]'``).
    """
    prefer_float64_in_jax()
    obj = resolve(target, KEY, search_dir)
    if inspect.isclass(obj):
        if not issubclass(obj, Loss):
            raise ConfigError(KEY, target, f"class {obj.__name__} is not a gdexp Loss: subclass "
                                           "gdexp.core.losses.base.Loss, or name a function f(x)")
        loss = UserLoss(obj, target, search_dir, dim, kwargs)
    else:
        loss = JaxLoss(obj, target, search_dir, dim, kwargs)
    probe_loss(loss, loss.default_init())
    return loss


def probe_loss(loss: Loss, start: np.ndarray, key: str = KEY) -> None:
    """Evaluate a loss on a (1, d) and a (B, d) batch at a start and check what comes back.

    For a loss gdexp did not write: the values must be a float array of
    shape (B,), the gradients (B, d), and both finite at the start (a
    non-finite start is an input error, not a divergence at step 0).

    Args:
        loss: the loss to check.
        start: ``(d,)`` one start point (probed alone and as 3 copies), or
            ``(n, d)`` per-run starts (probed as row 0 alone, then all).
        key: the config key a non-finite start blames: ``"init"`` for a
            start from the config, the target for its own default.

    Raises:
        ConfigError: naming what came back (type, dtype or shape) or where
            the loss is not finite.
    """
    start = np.asarray(start, dtype=np.float64)
    if start.ndim not in (1, 2) or start.shape[-1] != loss.dim:
        raise ConfigError(key, start.tolist(), f"needs {loss.dim} values per start point (loss.dim={loss.dim})")
    rows = start[None] if start.ndim == 1 else start
    batches = (rows[:1], np.repeat(rows, 3, axis=0) if len(rows) == 1 else rows)
    path = getattr(loss, "target", type(loss).__name__)
    for x in batches:
        out = _call(loss, x, path)
        if not isinstance(out, tuple) or len(out) != 2:
            raise ConfigError(KEY, path, f"value_and_grad returned {_describe(out)}; "
                                         "needs a tuple (values (B,), gradients (B, d))")
        B, d = x.shape
        for what, value, shape in (("values", out[0], (B,)), ("gradients", out[1], (B, d))):
            array = np.asarray(value)
            if array.dtype.kind != "f":
                raise ConfigError(KEY, path, f"value_and_grad on a {x.shape} batch returned {what} of "
                                             f"dtype {array.dtype}; needs float")
            if array.shape != shape:
                raise ConfigError(KEY, path, f"value_and_grad on a {x.shape} batch returned {what} of "
                                             f"shape {array.shape}; needs {shape}")
        for what, value in (("loss", out[0]), ("gradient", out[1])):
            value = np.asarray(value).reshape(B, -1)
            bad = ~np.isfinite(value)
            if bad.any():
                row = int(np.argmax(bad.any(axis=1)))
                shown, point = value[row][bad[row]][0], x[row].tolist()
                if key == KEY:
                    raise ConfigError(KEY, path, f"the {what} is {shown} at the start point {point}: an input "
                                                 "error, not a divergence; choose another init=[...]")
                raise ConfigError(key, point, f"the {what} of {path} is {shown} here: an input error, "
                                              "not a divergence")


# The gradient check (check_gradient): a component disagrees when |g - fd| > GRAD_RTOL (1 + max |fd|).
# Central differences are good to ~eps^(2/3) ~ 4e-11 relative on a well-scaled loss (h = eps^(1/3)
# (1 + |x_i|)), so 1e-5 leaves room for ill-scaled ones and still catches a wrong factor or sign.
GRAD_RTOL = 1e-5
# At most this many components are checked per point (seeded, at random, above it): each costs 2 values.
GRAD_COMPONENTS = 100
# How far the two nearby points lie from the start, relative to (1 + |x0|).
_NEARBY = 1e-2


def check_gradient(loss: Loss, x0: np.ndarray, seed: int = 0) -> None:
    """A user's numpy loss: its gradient against central differences of its values, at the start
    and at two seeded points near it.

    Args:
        loss: the loss (value_and_grad on (B, d) batches; full data).
        x0: (d,) the start point.
        seed: draws the nearby points and, above GRAD_COMPONENTS parameters, the components checked.

    Raises:
        ConfigError: on loss._target_, naming the worst component, where it is, both values and
            the tolerance (see GRAD_RTOL); loss.check_grad=false skips the check.
    """
    x0 = np.asarray(x0, dtype=np.float64)
    d = len(x0)
    rng = np.random.default_rng(seed)
    comps = np.arange(d) if d <= GRAD_COMPONENTS else np.sort(rng.choice(d, GRAD_COMPONENTS, replace=False))
    points = [x0] + [x0 + _NEARBY * (1 + np.abs(x0)) * rng.standard_normal(d) for _ in range(2)]
    eps = np.finfo(np.float64).eps
    worst = None
    with np.errstate(all="ignore"):
        for where, x in zip(("the start point", "a point near the start", "a point near the start"), points):
            h = eps ** (1 / 3) * (1 + np.abs(x[comps]))
            shifted = np.repeat(x[None], 2 * len(comps), axis=0)
            shifted[np.arange(len(comps)), comps] += h
            shifted[len(comps) + np.arange(len(comps)), comps] -= h
            f, _ = loss.value_and_grad(shifted)
            _, g = loss.value_and_grad(x[None])
            f, g = np.asarray(f, dtype=np.float64), np.asarray(g, dtype=np.float64)[0, comps]
            fd = (f[:len(comps)] - f[len(comps):]) / (2 * h)
            if not (np.isfinite(fd).all() and np.isfinite(g).all()):
                continue  # not smooth here (a kink): nothing to compare
            err = np.abs(g - fd) / (1 + np.abs(fd).max())
            i = int(np.argmax(err))
            if err[i] > GRAD_RTOL and (worst is None or err[i] > worst[0]):
                worst = (err[i], comps[i], where, x, g[i], fd[i])
    if worst is None:
        return
    err, i, where, x, g, fd = worst
    names = list(getattr(loss, "param_names", ())) or [f"x[{j}]" for j in range(d)]
    at = np.array2string(x, precision=6, separator=", ", threshold=6)
    raise ConfigError(KEY, getattr(loss, "target", type(loss).__name__),
                      f"value_and_grad's gradient disagrees with central differences of its values: "
                      f"component {names[i]} at {where} {at} is {g:.10g}, the differences give {fd:.10g} "
                      f"(error {err:.2g} > {GRAD_RTOL:g} x (1 + max |differences|)); fix the gradient, "
                      "or skip this check with loss.check_grad=false")


class _TargetLoss(Loss):
    """What both forms keep of their target: enough to name it in a config hash and to rebuild it."""

    def _remember(self, obj, target: str, search_dir, dim: int | None, kwargs: dict) -> None:
        self.target, self.search_dir, self.kwargs = target, _absolute(search_dir), dict(kwargs)
        self._dim_arg = dim
        self.source_sha256 = source_sha256(obj)

    def __reduce__(self):
        # Workers rebuild from the path: a jitted function does not pickle, and
        # importing the target again puts the start folder on the worker's sys.path.
        return _rebuild, (self.target, self.search_dir, self._dim_arg, self.kwargs, self.source_sha256)


class UserLoss(_TargetLoss):
    """A user's Loss subclass, instantiated from the config and checked (built by ``user_loss``).

    Delegates to the user's instance (``inner``), with values and gradients
    as float64 arrays. Its start is the class's ``default_init()``, or the
    origin if the class does not write one. Pickles as its target path and
    keywords, like ``JaxLoss``.

    Attributes:
        target, search_dir, kwargs: what it was built from (and pickles as).
        source_sha256: SHA-256 of the file defining the class.
        inner: the user's instance.
    """

    def __init__(self, cls: type, target: str, search_dir, dim: int | None, kwargs: dict):
        self._remember(cls, target, search_dir, dim, kwargs)
        call_kwargs = dict(kwargs)
        if dim is not None and _accepts(cls, "dim"):
            call_kwargs["dim"] = dim
        check_kwargs(cls, call_kwargs)
        try:
            self.inner = cls(**call_kwargs)
        except ConfigError:
            raise
        except Exception as error:
            raise ConfigError(KEY, target, f"{cls.__name__}({_kwargs_text(call_kwargs)}) raised "
                                           f"{describe_exception(error, _file_of(cls))}") from None
        self.dim = _check_dim(getattr(self.inner, "dim", None), target, dim)
        own_name = getattr(self.inner, "name", Loss.name)
        self.name = own_name if own_name != Loss.name else cls.__name__
        self.n_data = getattr(self.inner, "n_data", None)
        try:
            init = self.inner.default_init()
        except NotImplementedError:  # the base class's: the class gives no start of its own
            init = np.zeros(self.dim)
        except Exception as error:
            raise ConfigError(KEY, target, f"{cls.__name__}.default_init() raised "
                                           f"{describe_exception(error, _file_of(cls))}") from None
        self._init = _check_init(init, self.dim, target, "default_init()")

    def value_and_grad(self, x: np.ndarray, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        f, g = self.inner.value_and_grad(x) if rows is None else self.inner.value_and_grad(x, rows)
        return np.asarray(f, dtype=np.float64), np.asarray(g, dtype=np.float64)

    def default_init(self) -> np.ndarray:
        return self._init.copy()

    def minima(self):
        return self.inner.minima()

    def hessian_extremes(self):
        return self.inner.hessian_extremes()

    def data_sha256(self):
        return self.inner.data_sha256()

    def data_source(self):
        return self.inner.data_source()

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(self.inner.param_names)

    def __getattr__(self, name: str):
        """The user's own attributes (an ``hvp`` method, a ``scale`` field) through the wrapper."""
        if name.startswith("_") or "inner" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.inner, name)


class JaxLoss(_TargetLoss):
    """A scalar function ``f(x, **kwargs)`` of ``x`` (shape ``(dim,)``), differentiated by JAX.

    ``value_and_grad`` is ``jax.value_and_grad(f)`` mapped over the rows of
    the batch with ``jax.lax.map`` inside ``jax.jit``, in float64. Not
    ``jax.vmap``: XLA compiles a vmapped batch with rounding that depends
    on the batch size and a row's position in it (fused multiply-adds and
    reductions vectorized differently: ~1 in 4 rows differed in the last
    bits between B=1 and B=64 for a 3-D Rosenbrock on jax 0.10.2 CPU), while
    ``lax.map`` runs one compiled row function for every row, and was
    faster too (13 against 51 us per call at B=64, d=2). A lone row is
    padded to two (a one-trip loop is compiled inline, with different
    rounding), and batches are padded to the next power of two so that a
    descent, whose batch shrinks as runs stop, compiles at most log2(B) + 1
    shapes (~60 ms each). ``tests/specs/test_user_loss.py`` checks rows are
    bit-identical alone and in batches of 1 to 100.

    Built by ``user_loss``: keyword arguments are bound with
    ``functools.partial`` (and ``dim`` too if ``fn`` names it); ``dim``
    comes from ``loss.dim`` or the length of ``fn.init``; the start is
    ``fn.init`` if the function has that attribute, else the origin.

    Attributes:
        target, search_dir, kwargs: what it was built from (and pickles as).
        source_sha256: SHA-256 of the file defining ``fn``.
    """

    def __init__(self, fn, target: str, search_dir, dim: int | None, kwargs: dict):
        jax = _import_jax(target)
        self._remember(fn, target, search_dir, dim, kwargs)
        self.name = getattr(fn, "__name__", type(fn).__name__)
        self._file = _file_of(fn)
        self.n_data = None
        init = getattr(fn, "init", None)
        if dim is None and init is not None:
            dim = int(np.size(init))
        if dim is None:
            raise ConfigError("loss.dim", None, f"required for a function loss ({target}): its number "
                                                "of parameters, the length of x")
        self.dim = _check_dim(dim, target, None)
        self._init = np.zeros(self.dim) if init is None else _check_init(init, self.dim, target, "init attribute")
        _check_takes_x(fn, target)
        call_kwargs = dict(kwargs)
        if _accepts(fn, "dim", skip=1):
            call_kwargs["dim"] = self.dim
        check_kwargs(fn, call_kwargs, n_positional=1)
        # jax_enable_x64 is process-wide (JAX has no per-function float64):
        # set here, where it is needed, even if something turned it off since.
        jax.config.update("jax_enable_x64", True)
        self._fn = functools.partial(fn, **call_kwargs)
        self._check_scalar(jax)
        value_and_grad = jax.value_and_grad(self._fn)
        grad = jax.grad(self._fn)
        self._value_and_grad = jax.jit(lambda x: jax.lax.map(value_and_grad, x))
        self._hvp = jax.jit(lambda x, v: jax.lax.map(
            lambda xv: jax.jvp(grad, (xv[0],), (xv[1],))[1], (x, v)))

    def value_and_grad(self, x: np.ndarray, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(B, dim) -> (values (B,), gradients (B, dim))``, float64; ``rows`` is ignored (no data)."""
        n = len(x)
        try:
            f, g = self._value_and_grad(_pad(x))
        except Exception as error:  # tracing a new batch shape runs the user's code again
            raise ConfigError(KEY, self.target, _traced_failure(error, self._file)) from None
        return np.array(f)[:n], np.array(g)[:n]

    def hvp(self, x: np.ndarray, v: np.ndarray) -> np.ndarray:
        """``(B, dim), (B, dim) -> (B, dim)``: each row's exact Hessian times its vector.

        Forward-over-reverse (``jax.jvp`` of ``jax.grad``), one gradient's
        cost, as in the JAX autodiff cookbook's ``hvp``.
        """
        n = len(x)
        return np.array(self._hvp(_pad(x), _pad(v)))[:n]

    def default_init(self) -> np.ndarray:
        return self._init.copy()

    def _check_scalar(self, jax) -> None:
        """Call the function eagerly once: its own failures and non-scalars read better than traced ones."""
        try:
            out = self._fn(jax.numpy.asarray(self._init))
        except Exception as error:
            raise ConfigError(KEY, self.target, f"{self.name}(x) raised {describe_exception(error, self._file)}") \
                from None
        if not isinstance(out, (jax.Array, np.ndarray, np.generic, int, float)) or isinstance(out, bool):
            raise ConfigError(KEY, self.target, f"{self.name}(x) returned {_describe(out)}; needs a float scalar")
        if np.shape(out) != ():
            raise ConfigError(KEY, self.target, f"{self.name}(x) returned shape {np.shape(out)}, needs a scalar")
        dtype = np.dtype(jax.numpy.result_type(out))
        if dtype.kind != "f":
            raise ConfigError(KEY, self.target, f"{self.name}(x) returned dtype {dtype}, needs a float scalar")


def _rebuild(target, search_dir, dim, kwargs, sha256):
    """Unpickling, in a worker: import the target again, and refuse code that changed meanwhile."""
    loss = user_loss(target, search_dir, dim, **kwargs)
    if loss.source_sha256 != sha256:
        raise ConfigError(KEY, target, "its source file changed after the sweep started; start it again")
    return loss


def _import_jax(target: str):
    try:
        import jax
    except ImportError:
        raise ConfigError(KEY, target, "a function loss is differentiated with JAX, which is not "
                                       "installed: pip install 'gdexp[jax]' (or write a Loss subclass "
                                       "with value_and_grad in numpy)") from None
    return jax


def _pad(x: np.ndarray) -> np.ndarray:
    """Rows padded with copies of row 0 to the next power of two, at least 2 (see JaxLoss)."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    size = max(2, 1 << (n - 1).bit_length())
    if size == n:
        return x
    return np.concatenate([x, np.broadcast_to(x[:1], (size - n, x.shape[1]))])


def _traced_failure(error: BaseException, file: str | None) -> str:
    reason = f"cannot be compiled by JAX: {describe_exception(error, file)}"
    if "Tracer" in type(error).__name__ or "Concretization" in type(error).__name__:
        reason += "; use jnp.where, not if or float(), on values of x"
    return reason


def _call(loss: Loss, x: np.ndarray, path: str):
    """What the loss's own value_and_grad returns: a UserLoss's inner one, before float64 conversion."""
    raw = loss.inner if isinstance(loss, UserLoss) else loss
    try:
        return raw.value_and_grad(x)
    except ConfigError:
        raise
    except Exception as error:
        raise ConfigError(KEY, path, f"value_and_grad on a {x.shape} batch raised "
                                     f"{describe_exception(error, _file_of(type(raw)))}") from None


def _check_dim(dim, target: str, wanted: int | None) -> int:
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
        raise ConfigError("loss.dim", dim, f"{target} needs a whole number of parameters >= 1")
    if wanted is not None and dim != wanted:
        raise ConfigError("loss.dim", wanted, f"{target} has dim {dim}, and takes no dim parameter")
    return int(dim)


def _check_init(init, dim: int, target: str, what: str) -> np.ndarray:
    try:
        array = np.array(init, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(KEY, target, f"its {what} is {_describe(init)}; needs {dim} numbers") from None
    if array.shape != (dim,):
        raise ConfigError(KEY, target, f"its {what} has shape {array.shape}; needs ({dim},) (loss.dim={dim})")
    return array


def _check_takes_x(fn, target: str) -> None:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return
    takes_x = params and params[0].kind in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD,
                                            params[0].VAR_POSITIONAL)
    if not takes_x:
        raise ConfigError(KEY, target, f"{getattr(fn, '__name__', target)}{inspect.signature(fn)} takes no "
                                       "parameter vector; needs f(x, **kwargs) -> scalar")


def _accepts(target, name: str, skip: int = 0) -> bool:
    try:
        params = list(inspect.signature(target).parameters.values())[skip:]
    except (TypeError, ValueError):
        return False
    return any(p.name == name and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) for p in params)


def _file_of(obj) -> str | None:
    try:
        return inspect.getsourcefile(obj)
    except TypeError:
        return None


def _absolute(search_dir) -> str | None:
    return None if search_dir is None else str(Path(search_dir).resolve())


def _kwargs_text(kwargs: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


def _describe(value) -> str:
    text = f"a value of type {type(value).__name__}"
    if isinstance(value, (tuple, list)):
        return f"{text}, length {len(value)}"
    shape = getattr(value, "shape", None)
    return text if shape is None else f"{text}, shape {shape}"
