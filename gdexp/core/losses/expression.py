"""A loss typed as a formula in the config, with exact gradients.

``gdexp loss=expression loss.expr='(1 - x)**2 + 100*(y - x**2)**2'`` descends the
function the formula writes. The text is parsed with Python's ``ast`` and checked
against a whitelist; it is never evaluated (no eval, exec or compile of it). The
checked tree is evaluated with numpy ufuncs, one column per variable, and its
gradient is derived symbolically by sympy and compiled by ``sympy.lambdify`` from
sympy's own printout, never from the user's text.

What a formula may hold:
    - numbers: int and float literals (``2``, ``0.5``, ``1e-3``) and the constants ``pi``
      and ``e`` (also ``E``, sympy's name: Euler's number);
    - the variables: names, in the order of their first appearance, or as listed
      in ``loss.variables``;
    - ``+ - * / **`` and unary ``-`` and ``+``;
    - the functions ``sin cos tan exp log sqrt abs tanh sinh cosh``, one positional
      argument each.

Anything else (attribute access, subscripts, other calls or names, lambdas,
comprehensions, comparisons, keyword arguments, strings, booleans, complex
numbers, ...) raises one ``ConfigError`` that names it. Constant parts are folded
in float64 as they are parsed, so ``9**9**9`` or ``10**400`` fail at once as an
overflow instead of being handed to sympy, which would compute them exactly.
"""
from __future__ import annotations

import ast
import functools
import keyword
import math
import operator
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from gdexp.core.errors import ConfigError
from gdexp.core.losses.base import Loss

#: The functions a formula may call, one positional argument each.
FUNCTIONS = ("sin", "cos", "tan", "exp", "log", "sqrt", "abs", "tanh", "sinh", "cosh")
#: Named constants a formula may use; no variable may take their names.
CONSTANTS = {"pi": math.pi, "e": math.e, "E": math.e}
#: Names of numbers a formula may not use: a loss must be finite and real. Each would
#: otherwise become a parameter (``nan*x``, two of them), or mean sympy's nan, oo
#: (infinity), zoo (complex infinity) or I (the imaginary unit) to a reader.
REFUSED = ("nan", "inf", "oo", "zoo", "I")
#: Names of curve columns and logged metrics: a parameter named so would collide with them.
RESERVED_NAMES = ("step", "loss", "grad_norm", "lr", "val_loss", "val_accuracy")
#: Longest formula accepted, in characters. sympy's derivative of a product of n
#: factors has n^2 of them: at this length the slowest formulas take a few seconds.
MAX_CHARS = 1000
#: Deepest nesting accepted: calls, powers and unary signs each add a level, a run
#: of + and - (or of * and /) adds one level however long it is. sympy's
#: differentiation recurses about ten Python frames per level.
MAX_DEPTH = 30

_ALLOWED = ("a formula may use numbers, pi, e, its variables, + - * / ** and "
            + " ".join(FUNCTIONS))
_NUMPY_FUNCTIONS = {"sin": np.sin, "cos": np.cos, "tan": np.tan, "exp": np.exp, "log": np.log,
                    "sqrt": np.sqrt, "abs": np.abs, "tanh": np.tanh, "sinh": np.sinh, "cosh": np.cosh}
_MATH_FUNCTIONS = {"sin": math.sin, "cos": math.cos, "tan": math.tan, "exp": math.exp,
                   "log": math.log, "sqrt": math.sqrt, "abs": abs, "tanh": math.tanh,
                   "sinh": math.sinh, "cosh": math.cosh}
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.Pow: operator.pow}
# + and - chains (and * and / chains) are one level of nesting, flattened like sympy's Add and Mul.
_CHAIN = {ast.Add: "sum", ast.Sub: "sum", ast.Mult: "product", ast.Div: "product"}
_FORBIDDEN = {
    ast.Attribute: "attribute access", ast.Subscript: "subscript", ast.Slice: "slice",
    ast.Lambda: "lambda", ast.ListComp: "list comprehension", ast.SetComp: "set comprehension",
    ast.DictComp: "dict comprehension", ast.GeneratorExp: "generator expression",
    ast.Compare: "comparison", ast.BoolOp: "and/or", ast.IfExp: "conditional expression",
    ast.NamedExpr: "assignment expression", ast.List: "list", ast.Tuple: "tuple",
    ast.Set: "set", ast.Dict: "dict", ast.JoinedStr: "f-string", ast.Starred: "starred argument",
    ast.Await: "await", ast.Yield: "yield", ast.YieldFrom: "yield",
}


@dataclass(frozen=True)
class Expression(Loss):
    """A smooth function of named variables, typed as a formula.

    The value is the formula evaluated with numpy on float64 columns, one per
    variable, in the order the formula writes it; the gradient is sympy's exact
    derivative of the same formula, compiled to numpy. Both are elementwise, so
    each row is bit-identical alone or in any batch. Points outside the domain
    (``log`` or ``sqrt`` of a negative number, ``1/0``) give nan or inf, which the
    descent records as divergence. (Where the value is nan the gradient may not
    be: log's derivative 1/y is finite at y < 0. The descent stops on either.)

    Args:
        expr: The formula, at most MAX_CHARS characters (see the module docstring
            for what it may hold).
        variables: The parameters' names in order, or None for the names of the
            formula in the order they first appear. A listed variable the formula
            does not use is allowed: the loss is constant along it (gradient 0).

    Raises:
        ConfigError: ``loss.expr`` for a formula that is empty, too long or too
            deep, not Python syntax, holds anything outside the whitelist, names a
            variable not in ``variables``, has no variable, has a constant part that
            is not a finite float64 (``10**400``, ``1/0``, ``log(-1)``), or that
            sympy finds undefined everywhere (``1/(x - x)``); ``loss.variables`` for
            a list that is not of distinct names, or names a function, ``pi`` or a
            curve column (RESERVED_NAMES).

    Attributes:
        param_names: ``variables``, the names of curve columns and plot axes.
        dim: ``len(variables)``.

    >>> loss = Expression("(1 - x)**2 + 100*(y - x**2)**2")
    >>> loss.variables
    ('x', 'y')
    >>> f, g = loss.value_and_grad(np.array([[1.0, 1.0], [0.0, 0.0]]))
    >>> f, g
    (array([0., 1.]), array([[ 0.,  0.],
           [-2.,  0.]]))
    >>> Expression("x**2 + 3*y**2").hessian_extremes()
    (2.0, 6.0)
    >>> Expression("x.real")
    Traceback (most recent call last):
    ...
    gdexp.core.errors.ConfigError: loss.expr='x.real': attribute access 'x.real' at column 1 is not allowed; a formula may use numbers, pi, e, its variables, + - * / ** and sin cos tan exp log sqrt abs tanh sinh cosh
    """

    expr: str
    variables: tuple[str, ...] | None = None
    name: ClassVar[str] = "expression"

    def __post_init__(self):
        listed = _check_variables(self.variables)
        # Normalised so that a formula and its inferred list compare and hash equal
        # to the same formula with the list spelled out (Hydra hands in ListConfig).
        object.__setattr__(self, "variables", _parse(self.expr, listed)[1])
        _compiled(self.expr, self.variables)  # sympy's checks, before anything runs

    @property
    def dim(self) -> int:
        return len(self.variables)

    @property
    def param_names(self) -> tuple[str, ...]:
        return self.variables

    def value(self, x: np.ndarray) -> np.ndarray:
        """``(B, dim) -> (B,)`` the formula's values; no gradient work."""
        return self._compiled().value(_columns(x))

    def grad(self, x: np.ndarray) -> np.ndarray:
        """``(B, dim) -> (B, dim)`` the exact gradients."""
        return self._compiled().grad(_columns(x))

    def value_and_grad(self, x: np.ndarray, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(B, dim) -> ((B,), (B, dim))``; ``rows`` is ignored (no data).

        The value is ``value(x)``'s, bit for bit: it comes from the formula as
        written, not from sympy's rearrangement of it.
        """
        compiled, cols = self._compiled(), _columns(x)
        return compiled.value(cols), compiled.grad(cols)

    def default_init(self) -> np.ndarray:
        """The origin: a formula has no natural start, so users pass ``init``."""
        return np.zeros(self.dim)

    def hessian_extremes(self) -> tuple[float, float] | None:
        """``(lambda_min, lambda_max)`` for a quadratic formula whose Hessian is positive definite.

        Quadratic as written: built from numbers and variables with + and -, *,
        / by a constant and ** by a whole number, of degree <= 2; its Hessian is
        then sympy's exact constant one. A formula that is quadratic only after
        simplification (``sin(x)**2 + cos(x)**2 + x**2``) gives None, as does a
        Hessian that is not positive definite (the stability limits need
        lambda_min > 0).
        """
        return self._compiled().hessian_extremes

    def _compiled(self) -> "_Compiled":
        # Looked up per call, not stored: the loss pickles as its two strings
        # (Ray and joblib workers rebuild the compiled functions once each).
        return _compiled(self.expr, self.variables)


def expression(expr: str, variables: list[str] | None = None) -> Expression:
    """The loss ``loss=expression``: ``loss.expr`` and ``loss.variables``, checked.

    Args:
        expr: The formula, e.g. ``"(1 - x)**2 + 100*(y - x**2)**2"``.
        variables: The parameters' names in order; None = the formula's names in
            order of first appearance.

    Returns:
        The Expression loss.

    Raises:
        ConfigError: see Expression.

    >>> expression("exp(a) - a*b", ["b", "a"]).param_names
    ('b', 'a')
    >>> expression("x + y", ["x"])
    Traceback (most recent call last):
    ...
    gdexp.core.errors.ConfigError: loss.expr='x + y': unknown name 'y' at column 5; the variables are x (loss.variables)
    """
    return Expression(expr, variables)


def _columns(x: np.ndarray) -> np.ndarray:
    """``(B, d) -> (d, B)``, each variable's column contiguous.

    Contiguous columns put every ufunc on the same inner loop whatever B is
    (numpy's SIMD loops serve contiguous data, strided data may go elsewhere),
    so a row's bits never depend on the batch around it.
    """
    return np.ascontiguousarray(np.asarray(x, dtype=np.float64).T)


# ---------------------------------------------------------------------------------------------
# Parsing: text -> a small checked tree, constants folded.
#
# Nodes are tuples: ("num", float), ("var", index), ("neg", node), ("pow", base, exponent),
# ("call", function, node), ("sum" | "product", first, ((operator, node), ...)).

def _check_variables(variables) -> tuple[str, ...] | None:
    """The listed variables as a tuple of checked names; None stays None."""
    if variables is None:
        return None
    if isinstance(variables, (str, bytes)):
        raise ConfigError("loss.variables", variables, "must be a list of names, e.g. [x, y]")
    try:
        names = tuple(variables)
    except TypeError:
        raise ConfigError("loss.variables", variables, "must be a list of names, e.g. [x, y]") from None
    if not names:
        raise ConfigError("loss.variables", variables, "needs at least one name")
    for name in names:
        problem = _name_problem(name)
        if problem:
            raise ConfigError("loss.variables", variables, f"{name!r} {problem}")
        if names.count(name) > 1:
            raise ConfigError("loss.variables", variables, f"{name!r} is listed twice")
    return names


def _name_problem(name) -> str | None:
    """Why `name` cannot be a variable, or None."""
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        return "is not a name (letters, digits and _, not starting with a digit, not a Python keyword)"
    if name in FUNCTIONS:
        return "is a function"
    if name in CONSTANTS:
        return "is a constant"
    if name in REFUSED:
        return f"is not a finite real number's name ({', '.join(REFUSED)} are refused)"
    if name in RESERVED_NAMES:
        return f"is taken by a curve column ({', '.join(RESERVED_NAMES)})"
    return None


def _parse(text, listed: tuple[str, ...] | None) -> tuple[tuple, tuple[str, ...]]:
    """``(tree, variables)`` of a checked formula, or ConfigError("loss.expr", text, why)."""
    if not isinstance(text, str):
        raise ConfigError("loss.expr", text, "must be a formula (a string), e.g. '(1 - x)**2 + y**2'")
    return _parse_text(text, listed)


@functools.lru_cache(maxsize=256)
def _parse_text(text: str, listed: tuple[str, ...] | None) -> tuple[tuple, tuple[str, ...]]:
    if not text.strip():
        raise ConfigError("loss.expr", text, "is empty; write a formula, e.g. '(1 - x)**2 + y**2'")
    if len(text) > MAX_CHARS:
        raise ConfigError("loss.expr", text, f"is {len(text)} characters long; at most {MAX_CHARS}")
    try:
        body = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as error:
        where = f"line {error.lineno} column {error.offset}" if "\n" in text.strip() else f"column {error.offset}"
        raise ConfigError("loss.expr", text, f"syntax error at {where}: {error.msg}") from None
    except (ValueError, MemoryError, RecursionError) as error:  # null bytes; parser limits
        raise ConfigError("loss.expr", text, f"cannot be parsed: {error}") from None
    parser = _Parser(text.strip(), listed)
    tree = parser.node(body, depth=1)
    if tree[0] == "num":
        raise ConfigError("loss.expr", text, "has no variable; a loss must depend on its parameters")
    return tree, tuple(parser.variables)


class _Parser:
    """One formula's AST -> tree, checking every node against the whitelist."""

    def __init__(self, text: str, listed: tuple[str, ...] | None):
        self.text, self.listed = text, listed
        self.variables: list[str] = list(listed) if listed is not None else []

    def fail(self, reason: str):
        raise ConfigError("loss.expr", self.text, reason)

    def where(self, node) -> str:
        return f"{ast.get_source_segment(self.text, node)!r} at column {node.col_offset + 1}"

    def node(self, node, depth: int) -> tuple:
        if depth > MAX_DEPTH:
            self.fail(f"nests more than {MAX_DEPTH} levels deep at {self.where(node)}")
        if isinstance(node, ast.Constant):
            return self.number(node)
        if isinstance(node, ast.Name):
            return self.name(node)
        if isinstance(node, ast.UnaryOp):
            return self.unary(node, depth)
        if isinstance(node, ast.BinOp):
            return self.binary(node, depth)
        if isinstance(node, ast.Call):
            return self.call(node, depth)
        what = _FORBIDDEN.get(type(node), type(node).__name__)
        self.fail(f"{what} {self.where(node)} is not allowed; {_ALLOWED}")

    def number(self, node: ast.Constant) -> tuple:
        value = node.value
        if type(value) not in (int, float):  # bool is an int subclass: excluded too
            kind = {bool: "boolean", complex: "complex number", str: "string", bytes: "bytes"}.get(
                type(value), type(value).__name__)
            self.fail(f"{kind} {self.where(node)} is not allowed; numbers are real int and float literals")
        return self.constant(node, lambda: float(value))

    def constant(self, node, compute) -> tuple:
        """A folded constant, or a failure naming the part that is not a finite float64."""
        problem = None
        try:
            value = compute()
        except OverflowError:
            problem = "overflows float64"
        except ZeroDivisionError:
            problem = "divides by zero"
        except ValueError:
            problem = "is outside its function's domain"
        if problem:  # raised here, not in the handler, so no chained traceback
            self.fail(f"{self.where(node)} {problem}")
        if isinstance(value, complex):
            self.fail(f"{self.where(node)} is not a real number")
        if not math.isfinite(value):
            self.fail(f"{self.where(node)} overflows float64")
        return ("num", value)

    def name(self, node: ast.Name) -> tuple:
        name = node.id
        if name in CONSTANTS:
            return ("num", CONSTANTS[name])
        if name in REFUSED:
            self.fail(f"{self.where(node)} is not allowed: a loss must be finite and real "
                      f"({', '.join(REFUSED)} are refused; e, E and pi are the constants)")
        if name in FUNCTIONS:
            self.fail(f"function {self.where(node)} must be called, as {name}(...)")
        if name not in self.variables:
            if self.listed is not None:
                self.fail(f"unknown name {self.where(node)}; the variables are "
                          f"{', '.join(self.listed)} (loss.variables)")
            problem = _name_problem(name)
            if problem:
                self.fail(f"name {self.where(node)} {problem}")
            self.variables.append(name)  # ast.parse follows the text: first appearance first
        return ("var", self.variables.index(name))

    def unary(self, node: ast.UnaryOp, depth: int) -> tuple:
        if not isinstance(node.op, (ast.USub, ast.UAdd)):
            self.fail(f"operator {_symbol(node.op)} in {self.where(node)} is not allowed; {_ALLOWED}")
        operand = self.node(node.operand, depth + 1)
        if isinstance(node.op, ast.UAdd):
            return operand
        if operand[0] == "num":
            return ("num", -operand[1])
        return ("neg", operand)

    def binary(self, node: ast.BinOp, depth: int) -> tuple:
        if type(node.op) not in _BINARY:
            self.fail(f"operator {_symbol(node.op)} in {self.where(node)} is not allowed; {_ALLOWED}")
        if isinstance(node.op, ast.Pow):
            base, exponent = self.node(node.left, depth + 1), self.node(node.right, depth + 1)
            if base[0] == exponent[0] == "num":
                return self.constant(node, lambda: base[1] ** exponent[1])
            return ("pow", base, exponent)
        # A run of + and - (or * and /) is walked down its left spine, not recursed
        # into: long sums stay one level deep, evaluated left to right as Python would.
        kind = _CHAIN[type(node.op)]
        spine = []
        while isinstance(node, ast.BinOp) and _CHAIN.get(type(node.op)) == kind:
            spine.append(node)
            node = node.left
        first = self.node(node, depth + 1)
        rest = []
        for link in reversed(spine):
            op, term = _BINARY[type(link.op)], self.node(link.right, depth + 1)
            if not rest and first[0] == term[0] == "num":  # a constant prefix folds
                first = self.constant(link, lambda a=first[1], b=term[1], op=op: op(a, b))
            else:
                rest.append((op, term))
        return (kind, first, tuple(rest)) if rest else first

    def call(self, node: ast.Call, depth: int) -> tuple:
        function = node.func.id if isinstance(node.func, ast.Name) else None
        if function not in FUNCTIONS:
            self.fail(f"call of {ast.get_source_segment(self.text, node.func)!r} at column "
                      f"{node.col_offset + 1} is not allowed; the functions are {' '.join(FUNCTIONS)}")
        if node.keywords or len(node.args) != 1:
            self.fail(f"{function}() takes exactly one positional argument: {self.where(node)}")
        argument = self.node(node.args[0], depth + 1)
        if argument[0] == "num":
            return self.constant(node, lambda: _MATH_FUNCTIONS[function](argument[1]))
        return ("call", function, argument)


def _symbol(op) -> str:
    symbols = {ast.FloorDiv: "//", ast.Mod: "%", ast.MatMult: "@", ast.LShift: "<<", ast.RShift: ">>",
               ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^", ast.Invert: "~", ast.Not: "not"}
    return symbols.get(type(op), type(op).__name__)


# ---------------------------------------------------------------------------------------------
# Compiling: the tree -> numpy closures for the value, sympy for the gradient and Hessian.

@functools.lru_cache(maxsize=64)
def _compiled(text: str, variables: tuple[str, ...]) -> "_Compiled":
    """The compiled loss of a checked formula, once per process (workers rebuild it after unpickling)."""
    return _Compiled(text, variables)


class _Compiled:
    """A formula's value function, its symbolic gradient, and what derives from them."""

    def __init__(self, text: str, variables: tuple[str, ...]):
        import sympy

        self.tree, _ = _parse(text, variables)
        self.dim = len(variables)
        self.value = _value_function(self.tree)
        # Symbols without assumptions: sympy then never rewrites sqrt(-x**2) into
        # I*Abs(x) and the like; abs gets its real derivative from _real_abs.
        self.symbols = [sympy.Symbol(v) for v in variables]
        try:
            self.formula = _to_sympy(self.tree, self.symbols)
            self.gradient = [self.formula.diff(s) for s in self.symbols]
        except RecursionError:
            raise ConfigError("loss.expr", text, "nests too deeply for sympy to differentiate") from None
        # What sympy's own simplification can produce from a formula that is nowhere
        # a real function, such as 1/(x - x) -> zoo or (-2)**x -> log(-2) in its derivative.
        undefined = (sympy.zoo, sympy.nan, sympy.oo, -sympy.oo, sympy.I, sympy.Derivative)
        if self.formula.has(*undefined):
            raise ConfigError("loss.expr", text, f"sympy simplifies it to {self.formula}, "
                              f"undefined or complex everywhere")
        for variable, part in zip(variables, self.gradient):
            if part.has(*undefined):
                raise ConfigError("loss.expr", text, f"its derivative in {variable}, {part}, "
                                  f"is undefined or complex everywhere")

    def grad(self, cols: np.ndarray) -> np.ndarray:
        g = np.empty((cols.shape[1], self.dim))
        for i, column in enumerate(self._gradient_function(*cols)):
            g[:, i] = column  # a constant derivative broadcasts
        return g

    @functools.cached_property
    def _gradient_function(self):
        import sympy

        return sympy.lambdify(self.symbols, self.gradient, modules="numpy",
                              printer=_exact_float_printer(), cse=True, dummify=True)

    @functools.cached_property
    def hessian_extremes(self) -> tuple[float, float] | None:
        # The degree bound first: second derivatives of a long product take sympy minutes.
        if _degree(self.tree) > 2:
            return None
        hessian = np.empty((self.dim, self.dim))
        for i, component in enumerate(self.gradient):
            for j, s in enumerate(self.symbols):
                entry = component.diff(s)
                if entry.free_symbols:  # not a quadratic (sign()'s derivative stays unevaluated: here too)
                    return None
                hessian[i, j] = float(entry)
        if not np.isfinite(hessian).all():
            return None
        low, high = np.linalg.eigvalsh(hessian)[[0, -1]]
        return (float(low), float(high)) if low > 0 else None


def _value_function(tree):
    """The tree as a function ``cols (d, B) -> (B,)`` of numpy ufunc calls, in the formula's order."""
    kind = tree[0]
    if kind == "var":
        return operator.itemgetter(tree[1])
    if kind == "neg":
        inner = _value_function(tree[1])
        return lambda cols: -inner(cols)
    if kind == "call":
        function, inner = _NUMPY_FUNCTIONS[tree[1]], _value_function(tree[2])
        return lambda cols: function(inner(cols))
    if kind == "pow":
        return _binary(operator.pow, tree[1], tree[2])
    first, rest = tree[1], tree[2]
    if len(rest) == 1:
        return _binary(rest[0][0], first, rest[0][1])
    head = _value_function(first) if first[0] != "num" else (lambda cols, k=first[1]: k)
    links = [(op, term[1] if term[0] == "num" else None, None if term[0] == "num" else _value_function(term))
             for op, term in rest]

    def chain(cols):
        acc = head(cols)
        for op, number, term in links:
            acc = op(acc, number if term is None else term(cols))
        return acc
    return chain


def _degree(tree) -> float:
    """An upper bound on the tree's degree as a polynomial (inf where it is not one, as written).

    Degree <= 2 means a constant Hessian; formulas that are quadratic only after
    simplification (``sqrt(x**2)**2``) are not recognised, which costs only the
    stability lines of a report.
    """
    kind = tree[0]
    if kind in ("num", "var"):
        return 0 if kind == "num" else 1
    if kind == "neg":
        return _degree(tree[1])
    if kind == "call":
        return math.inf  # its argument holds a variable: constants were folded
    if kind == "pow":
        exponent = tree[2]
        whole = exponent[0] == "num" and exponent[1].is_integer() and exponent[1] >= 0
        return _degree(tree[1]) * exponent[1] if whole else math.inf
    degree = _degree(tree[1])
    for op, term in tree[2]:
        if kind == "sum":
            degree = max(degree, _degree(term))
        elif op is operator.mul:
            degree += _degree(term)
        elif term[0] != "num":  # dividing by anything but a constant
            return math.inf
    return degree


def _binary(op, left, right):
    """``op(left, right)`` with a constant side passed as a Python float (numpy's scalar loops)."""
    if left[0] == "num":
        k, f = left[1], _value_function(right)
        return lambda cols: op(k, f(cols))
    if right[0] == "num":
        f, k = _value_function(left), right[1]
        return lambda cols: op(f(cols), k)
    f, g = _value_function(left), _value_function(right)
    return lambda cols: op(f(cols), g(cols))


def _to_sympy(tree, symbols):
    """The tree as a sympy expression (sympy flattens and reorders it; values come from the tree)."""
    import sympy

    kind = tree[0]
    if kind == "num":
        value = tree[1]
        # Integral constants stay exact, so x**2 differentiates to 2*x, not 2.0*x**1.0.
        if value.is_integer() and abs(value) <= 2 ** 53:
            return sympy.Integer(int(value))
        return sympy.Float(value)
    if kind == "var":
        return symbols[tree[1]]
    if kind == "neg":
        return -_to_sympy(tree[1], symbols)
    if kind == "pow":
        return _to_sympy(tree[1], symbols) ** _to_sympy(tree[2], symbols)
    if kind == "call":
        argument = _to_sympy(tree[2], symbols)
        if tree[1] == "abs":
            return _real_abs()(argument)
        return getattr(sympy, tree[1])(argument)
    result = _to_sympy(tree[1], symbols)
    for op, term in tree[2]:
        result = op(result, _to_sympy(term, symbols))
    return result


@functools.cache
def _real_abs():
    """|u| with the derivative sign(u) u', for real u.

    sympy's Abs knows that derivative only for arguments it can prove real; for
    others (``abs(log(x))``) it writes one in re() and im(). The variables are
    real, so every argument is real where the formula is defined.
    """
    import sympy

    class RealAbs(sympy.Function):
        nargs = 1

        def fdiff(self, argindex=1):
            return sympy.sign(self.args[0])

    return RealAbs


@functools.cache
def _exact_float_printer():
    """sympy's numpy printer, but floats printed with repr (it prints 15 digits, losing bits), and RealAbs."""
    from sympy.printing.numpy import NumPyPrinter

    class ExactFloatPrinter(NumPyPrinter):
        def _print_Float(self, expr):
            return repr(float(expr))

        def _print_RealAbs(self, expr):
            return f"{self._module_format('numpy.abs')}({self._print(expr.args[0])})"

    return ExactFloatPrinter
