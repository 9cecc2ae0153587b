"""Compile the fast CEL subset to plain Python closures.

Why: celpy costs ~150-400 µs per evaluation because it wraps every value in CEL types and walks
the lark tree; trigger expressions and cancel ``if`` expressions run for every event, so they
must cost about a microsecond. The closures work on the raw JSON-like values and raise (a native
``KeyError``/``TypeError`` or :class:`EvalError`) for a CEL runtime error; ``&&``/``||`` catch
errors to keep CEL's commutative error semantics, and the top level turns any error into False.

Each node becomes one closure; constant subtrees are folded at compile time. The most common
leaves — a field path compared with a literal (``event.data.plan == "pro"``,
``event.data.amount > 100``), a field path alone, ``has(path)`` and ``path in [literals]`` — are
fused into one closure built from a fixed template (the template text contains no user input:
variable names, keys and literals are passed in as closure cells, so identifiers such as
``async`` are never Python source).

Anything outside the subset raises :class:`Unsupported` and the caller uses the full evaluator.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from .ast import (
    TYPE_IDENTS,
    Binary,
    Call,
    Cond,
    Err,
    Has,
    Ident,
    Index,
    ListExpr,
    Lit,
    MapExpr,
    Node,
    Select,
    Unary,
    field_path,
    flatten,
)
from .errors import EvalError, Unsupported
from .values import (
    UInt,
    cel_add,
    cel_contains,
    cel_div,
    cel_ends_with,
    cel_eq,
    cel_ge,
    cel_gt,
    cel_has,
    cel_in,
    cel_index,
    cel_le,
    cel_lt,
    cel_mod,
    cel_mul,
    cel_neg,
    cel_not,
    cel_size,
    cel_starts_with,
    cel_sub,
    type_name,
)

Activation = Mapping[str, object]
Fn = Callable[[Activation], object]
Predicate = Callable[[Activation], bool]

_CONST_ATTR: Final = "cel_const"  # (True, value) or (False, error message) on constant closures


class _ErrorSentinel:
    """Stands for "this operand raised" inside ``&&``/``||``."""

    __slots__ = ()


_ERR: Final = _ErrorSentinel()


def const_fn(value: object) -> Fn:
    def const(a: Activation) -> object:
        return value

    setattr(const, _CONST_ATTR, (True, value))
    return const


def error_fn(message: str) -> Fn:
    def error(a: Activation) -> object:
        raise EvalError(message)

    setattr(error, _CONST_ATTR, (False, message))
    return error


def const_of(fn: Fn) -> tuple[bool, object] | None:
    """``(True, value)`` / ``(False, message)`` for a constant closure, None otherwise."""
    return getattr(fn, _CONST_ATTR, None)


def _fold(fn: Fn, *parts: Fn) -> Fn:
    """Evaluate ``fn`` now if all its operands are constants."""
    if all(const_of(p) is not None for p in parts):
        try:
            return const_fn(fn({}))
        except Exception as exc:  # noqa: BLE001 - any failure is a CEL error value
            return error_fn(error_message(exc))
    return fn


def error_message(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return f"no such key: {exc.args[0]!r}" if exc.args else "no such key"
    if isinstance(exc, TypeError):
        return f"no matching overload ({exc})"
    return str(exc) or type(exc).__name__


# --------------------------------------------------------------------------------------------
# fused templates


_TEMPLATE_CACHE: dict[str, Callable[..., Fn]] = {}

_LEAF_BODIES: Final[dict[str, str]] = {
    "get": "return {P}",
    "eq": "return {P} == lit",
    "ne": "return {P} != lit",
    # a numeric literal equal to 0 or 1 must not match the bools False/True
    "eq_num": "x = {P}\n        return x == lit and x.__class__ is not bool",
    "ne_num": "x = {P}\n        return x != lit or x.__class__ is bool",
    "is": "return {P} is lit",
    "is_not": "return {P} is not lit",
    # numeric ordering: Python raises TypeError for str/list/dict/None operands; only bool slips through
    "num_lt": "x = {P}\n        if x.__class__ is bool: raise EvalError('bool < number')\n        return x < lit",
    "num_le": "x = {P}\n        if x.__class__ is bool: raise EvalError('bool <= number')\n        return x <= lit",
    "num_gt": "x = {P}\n        if x.__class__ is bool: raise EvalError('bool > number')\n        return x > lit",
    "num_ge": "x = {P}\n        if x.__class__ is bool: raise EvalError('bool >= number')\n        return x >= lit",
    # string ordering: Python raises TypeError for every non-str operand
    "str_lt": "return {P} < lit",
    "str_le": "return {P} <= lit",
    "str_gt": "return {P} > lit",
    "str_ge": "return {P} >= lit",
    "in_strs": "x = {P}\n        if x.__class__ is str: return x in lit\n        return cel_in(x, items)",
    "has": "x = {P}\n        if x.__class__ is dict: return field in x\n        return cel_has(x, field)",
}


def _fused(kind: str, var: str, keys: tuple[str, ...], **consts: object) -> Fn:
    """A closure for ``<var>.<keys...> <op> <literal>`` built from a fixed template."""
    n = len(keys)
    cache_key = f"{kind}/{n}"
    maker = _TEMPLATE_CACHE.get(cache_key)
    if maker is None:
        path = "a[var]" + "".join(f"[k{i}]" for i in range(n))
        body = _LEAF_BODIES[kind].format(P=path)
        params = ", ".join(["var", *(f"k{i}" for i in range(n)), "lit", "items", "field"])
        src = f"def _make({params}):\n    def fused(a):\n        {body}\n    return fused\n"
        namespace: dict[str, Any] = {"EvalError": EvalError, "cel_in": cel_in, "cel_has": cel_has}
        exec(compile(src, f"<pipeline.expr template {cache_key}>", "exec"), namespace)
        maker = namespace["_make"]
        _TEMPLATE_CACHE[cache_key] = maker
    return maker(var, *keys, consts.get("lit"), consts.get("items"), consts.get("field"))


def _path_of(node: Node) -> tuple[str, tuple[str, ...]] | None:
    """``("event", ("data", "plan"))`` for ``event.data.plan`` / ``event["data"]["plan"]``, if short
    enough for a fused template."""
    path = field_path(node)
    if path is not None and len(path[1]) <= 8:
        return path
    return None


# --------------------------------------------------------------------------------------------
# compiler


_ORDER_FNS: Final[dict[str, Callable[[object, object], bool]]] = {"<": cel_lt, "<=": cel_le, ">": cel_gt, ">=": cel_ge}
_FLIP: Final[dict[str, str]] = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}
_ORDER_KIND: Final[dict[str, str]] = {"<": "lt", "<=": "le", ">": "gt", ">=": "ge"}
_ARITH: Final[dict[str, Callable[[object, object], object]]] = {
    "+": cel_add, "-": cel_sub, "*": cel_mul, "/": cel_div, "%": cel_mod,
}
_STR_METHODS: Final[dict[str, Callable[[object, object], bool]]] = {
    "startsWith": cel_starts_with, "endsWith": cel_ends_with, "contains": cel_contains,
}


def compile_node(node: Node) -> Fn:
    """Closure computing ``node``'s value; raises :class:`Unsupported` outside the fast subset."""
    if isinstance(node, Lit):
        return const_fn(node.value)
    if isinstance(node, Err):
        return error_fn(node.message)
    if isinstance(node, Ident):
        if node.name in TYPE_IDENTS:
            raise Unsupported(f"type identifier {node.name}")
        return _fused("get", node.name, ())
    if isinstance(node, (Select, Index)):
        path = _path_of(node)
        if path is not None:
            return _fused("get", *path)
        if isinstance(node, Select):
            return _select(compile_node(node.operand), node.field)
        return _index(compile_node(node.operand), compile_node(node.index))
    if isinstance(node, Has):
        path = _path_of(node.operand)
        if path is not None:
            return _fused("has", *path, field=node.field)
        op = compile_node(node.operand)
        field = node.field

        def has(a: Activation) -> object:
            return cel_has(op(a), field)

        return _fold(has, op)
    if isinstance(node, Unary):
        return _unary(node.op, compile_node(node.operand))
    if isinstance(node, Binary):
        return _binary(node)
    if isinstance(node, Cond):
        return _cond(compile_node(node.cond), compile_node(node.then), compile_node(node.otherwise))
    if isinstance(node, ListExpr):
        return _list([compile_node(x) for x in node.items])
    if isinstance(node, MapExpr):
        return _map(node)
    if isinstance(node, Call):
        return _call(node)
    raise Unsupported(type(node).__name__)


def _call2(fn: Callable[[object, object], object], left: Fn, right: Fn) -> Fn:
    """``fn(left, right)`` on the operands' values (a CEL operator or method implementation)."""

    def call2(a: Activation) -> object:
        return fn(left(a), right(a))

    return _fold(call2, left, right)


def _select(op: Fn, field: str) -> Fn:
    # The operand's value is subscripted as it is: Python's TypeError (not a map) and KeyError (no
    # such key) are the CEL errors, so the value is dynamically typed here on purpose.
    dyn: Callable[[Activation], Any] = op

    def select(a: Activation) -> object:
        return dyn(a)[field]

    return _fold(select, op)


def _index(op: Fn, idx: Fn) -> Fn:
    c = const_of(idx)
    if c is not None and c[0] and type(c[1]) is int:
        i = c[1]

        def index_int(a: Activation) -> object:
            v = op(a)
            if v.__class__ is list and 0 <= i < len(v):
                return v[i]
            return cel_index(v, i)

        return _fold(index_int, op)

    def index(a: Activation) -> object:
        return cel_index(op(a), idx(a))

    return _fold(index, op, idx)


def _unary(op: str, operand: Fn) -> Fn:
    if op == "!":

        def not_(a: Activation) -> object:
            v = operand(a)
            if v is True:
                return False
            if v is False:
                return True
            return cel_not(v)

        return _fold(not_, operand)

    def neg(a: Activation) -> object:
        return cel_neg(operand(a))

    return _fold(neg, operand)


def _binary(node: Binary) -> Fn:
    op = node.op
    if op in ("&&", "||"):
        return _logic(op, [compile_node(x) for x in flatten(node, op)])
    if op in ("==", "!="):
        return _equality(node, op == "==")
    if op in _ORDER_FNS:
        return _ordering(node, op)
    if op == "in":
        return _in(node)
    return _call2(_ARITH[op], compile_node(node.left), compile_node(node.right))


def _logic(op: str, parts: list[Fn]) -> Fn:
    """n-ary ``&&``/``||`` with CEL's commutative error handling.

    ``&&``: any false operand makes it false (even if others erred); otherwise any error or
    non-bool operand makes it an error; otherwise true. ``||`` is the dual.
    """
    absorbing = op == "||"  # the value that decides the result: True for ||, False for &&
    identity = not absorbing
    consts = [const_of(p) for p in parts]
    if any(c is not None and c[0] and c[1] is absorbing for c in consts):
        return const_fn(absorbing)
    live = [p for p, c in zip(parts, consts, strict=True) if not (c is not None and c[0] and c[1] is identity)]
    if not live:
        return const_fn(identity)
    message = f"no matching overload for '{op}'"
    if len(parts) == 2 and len(live) == 2:
        f, g = live

        def logic2(a: Activation) -> object:
            # the first operand's error is held back: the second may still decide the result
            try:
                x = f(a)
            except Exception:  # noqa: BLE001
                x = _ERR
            if x is absorbing:
                return absorbing
            y = g(a)
            if y is absorbing:
                return absorbing
            if x is identity and y is identity:
                return identity
            raise EvalError(message)

        return _fold(logic2, f, g)

    fns = tuple(live)
    # A removed identity operand (``x && true``) would still have to be a bool; ``live`` keeps
    # every non-constant operand, so only the constant ``true``/``false`` ones were dropped.

    def logic_n(a: Activation) -> object:
        failed = False
        for fn in fns:
            try:
                v = fn(a)
            except Exception:  # noqa: BLE001
                failed = True
                continue
            if v is absorbing:
                return absorbing
            if v is not identity:
                failed = True
        if failed:
            raise EvalError(message)
        return identity

    return _fold(logic_n, *fns)


_SCALARS: Final[frozenset[type]] = frozenset({str, bytes, int, float, bool, type(None), UInt})


def _literal_side(node: Binary) -> tuple[Node, object, bool] | None:
    """``(other side, literal value, literal_was_left)`` if exactly one side is a scalar literal."""
    scalar = _SCALARS
    if isinstance(node.right, Lit) and type(node.right.value) in scalar and not isinstance(node.left, Lit):
        return node.left, node.right.value, False
    if isinstance(node.left, Lit) and type(node.left.value) in scalar and not isinstance(node.right, Lit):
        return node.right, node.left.value, True
    return None


def _equality(node: Binary, eq: bool) -> Fn:
    side = _literal_side(node)
    if side is not None:
        other, lit, _ = side
        path = _path_of(other)
        t = type(lit)
        if t is bool or lit is None:
            kind = "is" if eq else "is_not"
        elif t in (int, float, UInt) and (lit == 0 or lit == 1):
            kind = "eq_num" if eq else "ne_num"
        else:
            kind = "eq" if eq else "ne"
        if path is not None:
            return _fused(kind, *path, lit=lit)
        g = compile_node(other)
        if kind == "is":
            f: Fn = lambda a: g(a) is lit  # noqa: E731
        elif kind == "is_not":
            f = lambda a: g(a) is not lit  # noqa: E731
        elif kind == "eq":
            f = lambda a: g(a) == lit  # noqa: E731
        elif kind == "ne":
            f = lambda a: g(a) != lit  # noqa: E731
        elif kind == "eq_num":
            f = lambda a: cel_eq(g(a), lit)  # noqa: E731
        else:
            f = lambda a: not cel_eq(g(a), lit)  # noqa: E731
        return _fold(f, g)
    left = compile_node(node.left)
    right = compile_node(node.right)
    if eq:
        return _call2(cel_eq, left, right)

    def not_equal(a: Activation) -> object:
        return not cel_eq(left(a), right(a))

    return _fold(not_equal, left, right)


def _ordering(node: Binary, op: str) -> Fn:
    side = _literal_side(node)
    if side is not None:
        other, lit, lit_left = side
        eff = _FLIP[op] if lit_left else op
        t = type(lit)
        prefix = "num_" if t in (int, float, UInt) else "str_" if t is str else None
        path = _path_of(other)
        if prefix is not None and path is not None:
            return _fused(prefix + _ORDER_KIND[eff], *path, lit=lit)
    return _call2(_ORDER_FNS[op], compile_node(node.left), compile_node(node.right))


def _in(node: Binary) -> Fn:
    left = compile_node(node.left)
    right = compile_node(node.right)
    c = const_of(right)
    if c is not None and c[0] and type(c[1]) is list and const_of(left) is None:
        items: list[object] = c[1]
        if items and all(type(x) is str for x in items):
            strs = frozenset(items)
            path = _path_of(node.left)
            if path is not None:
                return _fused("in_strs", *path, lit=strs, items=items)

            def in_strs(a: Activation) -> object:
                x = left(a)
                if x.__class__ is str:
                    return x in strs
                return cel_in(x, items)

            return in_strs

    return _call2(cel_in, left, right)


def _cond(cond: Fn, then: Fn, otherwise: Fn) -> Fn:
    c = const_of(cond)
    if c is not None and c[0] and c[1] is True:
        return then
    if c is not None and c[0] and c[1] is False:
        return otherwise

    def ternary(a: Activation) -> object:
        v = cond(a)
        if v is True:
            return then(a)
        if v is False:
            return otherwise(a)
        raise EvalError(f"ternary condition must be a bool, got {type_name(v)}")

    return _fold(ternary, cond)


def _list(items: list[Fn]) -> Fn:
    fns = tuple(items)

    def make_list(a: Activation) -> object:
        return [f(a) for f in fns]

    return _fold(make_list, *fns)


def _map(node: MapExpr) -> Fn:
    keys: list[str] = []
    values: list[Fn] = []
    for k, v in node.entries:
        if not (isinstance(k, Lit) and type(k.value) is str):
            raise Unsupported("map literal with a non-string key")
        keys.append(k.value)
        values.append(compile_node(v))
    pairs = tuple(zip(keys, values, strict=True))

    def make_map(a: Activation) -> object:
        return {k: f(a) for k, f in pairs}

    return _fold(make_map, *values)


def _call(node: Call) -> Fn:
    name = node.function
    if name == "size" and (
        (node.target is None and len(node.args) == 1) or (node.target is not None and not node.args)
    ):
        arg = compile_node(node.target if node.target is not None else node.args[0])

        def size(a: Activation) -> object:
            return cel_size(arg(a))

        return _fold(size, arg)
    if name in _STR_METHODS and node.target is not None and len(node.args) == 1:
        return _call2(_STR_METHODS[name], compile_node(node.target), compile_node(node.args[0]))
    raise Unsupported(f"function {name}")


def compile_predicate(node: Node) -> Predicate:
    """The whole expression as ``activation -> bool`` (True only for a boolean true result)."""
    fn = compile_node(node)
    c = const_of(fn)
    if c is not None:
        result = c[0] and c[1] is True
        return lambda a: result

    def predicate(a: Activation) -> bool:
        try:
            return fn(a) is True
        except Exception:  # noqa: BLE001 - a CEL error (or bad data) is "no match"
            return False

    return predicate
