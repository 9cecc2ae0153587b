"""A small, immutable CEL abstract syntax tree.

The lark parse tree from celpy is deep (one node per grammar level) and awkward to rewrite, so
it is converted once into these nodes. The same tree serves three purposes: compiling to Python
closures, partial evaluation (substituting a bound variable and folding constants) and printing
back to CEL text (``to_source``) so that a residual can be stored, logged or re-compiled by any
CEL implementation.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final, TypeGuard

from .values import INT64_MAX, INT64_MIN, UINT64_MAX, UInt

#: Comprehension macros: ``target.name(var, expr...)``; ``var`` is bound inside the arguments.
MACROS: Final[frozenset[str]] = frozenset({"all", "exists", "exists_one", "map", "filter"})
#: Identifiers that name types (``type(x) == string``); allowed even though they are not variables.
TYPE_IDENTS: Final[frozenset[str]] = frozenset(
    {"int", "uint", "double", "bool", "string", "bytes", "list", "map", "null_type", "type"}
)


class Node:
    """Base class of all AST nodes."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Lit(Node):
    """A constant: None, bool, int, UInt, float, str, bytes, or a list/dict of constants.

    Bound variables become ``Lit`` nodes holding the whole (JSON-like) value during ``partial``.
    """

    value: object


@dataclass(frozen=True, slots=True)
class Err(Node):
    """A constant CEL error (e.g. a missing field of a bound variable), kept so that error
    semantics (``false && error == false``, ``!error`` is an error) survive folding."""

    message: str


@dataclass(frozen=True, slots=True)
class Ident(Node):
    name: str


@dataclass(frozen=True, slots=True)
class Select(Node):
    """``operand.field``."""

    operand: Node
    field: str


@dataclass(frozen=True, slots=True)
class Index(Node):
    """``operand[index]``."""

    operand: Node
    index: Node


@dataclass(frozen=True, slots=True)
class Unary(Node):
    """``!x`` or ``-x``."""

    op: str
    operand: Node


@dataclass(frozen=True, slots=True)
class Binary(Node):
    """``left op right``; op is one of ``&& || == != < <= > >= in + - * / %``."""

    op: str
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Cond(Node):
    """``cond ? then : otherwise``."""

    cond: Node
    then: Node
    otherwise: Node


@dataclass(frozen=True, slots=True)
class ListExpr(Node):
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class MapExpr(Node):
    entries: tuple[tuple[Node, Node], ...]


@dataclass(frozen=True, slots=True)
class Has(Node):
    """The ``has(operand.field)`` macro."""

    operand: Node
    field: str


@dataclass(frozen=True, slots=True)
class Call(Node):
    """A function call ``f(args)`` or a method call ``target.f(args)``.

    Comprehension macros (see :data:`MACROS`) are calls whose first argument is the ``Ident`` of
    the loop variable.
    """

    function: str
    args: tuple[Node, ...]
    target: Node | None = field(default=None)


# --------------------------------------------------------------------------------------------
# traversal helpers


def children(node: Node) -> Iterator[Node]:
    """Direct sub-nodes (the loop variable of a macro included)."""
    if isinstance(node, (Select, Has)):
        yield node.operand
    elif isinstance(node, Index):
        yield node.operand
        yield node.index
    elif isinstance(node, Unary):
        yield node.operand
    elif isinstance(node, Binary):
        yield node.left
        yield node.right
    elif isinstance(node, Cond):
        yield node.cond
        yield node.then
        yield node.otherwise
    elif isinstance(node, ListExpr):
        yield from node.items
    elif isinstance(node, MapExpr):
        for k, v in node.entries:
            yield k
            yield v
    elif isinstance(node, Call):
        if node.target is not None:
            yield node.target
        yield from node.args


def is_macro(node: Node) -> TypeGuard[Call]:
    """A comprehension macro call: ``target.name(var, expr...)`` with ``var`` an identifier."""
    return (
        isinstance(node, Call)
        and node.function in MACROS
        and node.target is not None
        and len(node.args) >= 2
        and isinstance(node.args[0], Ident)
    )


def free_vars(node: Node, bound: frozenset[str] = frozenset()) -> set[str]:
    """Identifiers referenced by ``node`` that are not macro loop variables."""
    out: set[str] = set()
    _free_vars(node, bound, out)
    return out


def _free_vars(node: Node, bound: frozenset[str], out: set[str]) -> None:
    if isinstance(node, Ident):
        if node.name not in bound:
            out.add(node.name)
        return
    if is_macro(node):
        assert node.target is not None and isinstance(node.args[0], Ident)  # is_macro checked both
        _free_vars(node.target, bound, out)
        inner = bound | {node.args[0].name}
        for a in node.args[1:]:
            _free_vars(a, inner, out)
        return
    for c in children(node):
        _free_vars(c, bound, out)


def is_const(node: Node) -> bool:
    return isinstance(node, (Lit, Err))


def flatten(node: Node, op: str) -> list[Node]:
    """The operands of a (possibly nested) chain of the binary operator ``op``, left to right."""
    out: list[Node] = []
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, Binary) and n.op == op:
            stack.append(n.right)
            stack.append(n.left)
        else:
            out.append(n)
    return out


def chain(op: str, nodes: list[Node]) -> Node:
    """Rebuild a left-associated chain of the binary operator ``op`` (``nodes`` must not be empty)."""
    acc = nodes[0]
    for n in nodes[1:]:
        acc = Binary(op, acc, n)
    return acc


def conjuncts(node: Node) -> list[Node]:
    """The operands of a (possibly nested) top-level ``&&`` chain, left to right."""
    return flatten(node, "&&")


def and_all(nodes: list[Node]) -> Node:
    """Rebuild a left-associated ``&&`` chain (``true`` when empty)."""
    if not nodes:
        return Lit(True)
    return chain("&&", nodes)


def field_path(node: Node) -> tuple[str, tuple[str, ...]] | None:
    """``("event", ("data", "plan"))`` for ``event.data.plan`` / ``event["data"]["plan"]``.

    A bare identifier gives an empty key tuple; anything but selections and string-literal
    indexes on an identifier gives None.
    """
    keys: list[str] = []
    cur = node
    while True:
        if isinstance(cur, Select):
            keys.append(cur.field)
            cur = cur.operand
        elif isinstance(cur, Index) and isinstance(cur.index, Lit) and type(cur.index.value) is str:
            keys.append(cur.index.value)
            cur = cur.operand
        else:
            break
    if not isinstance(cur, Ident):
        return None
    keys.reverse()
    return cur.name, tuple(keys)


def var_path(node: Node, var: str) -> str | None:
    """``"data.importId"`` for ``var.data.importId`` (or ``var["data"]["importId"]``), else None.

    Only non-empty paths whose segments contain no ``.`` qualify: the dotted text must be
    unambiguous for :func:`~pipeline.expr.values.lookup_path`.
    """
    path = field_path(node)
    if path is None:
        return None
    name, keys = path
    if name != var or not keys:
        return None
    if any(not k or "." in k for k in keys):
        return None
    return ".".join(keys)


# --------------------------------------------------------------------------------------------
# printing


_IDENT_RE: Final = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*\Z")
#: Language keywords and reserved words; not usable as a ``.field`` (cel-cpp rejects ``a.in``).
RESERVED: Final[frozenset[str]] = frozenset(
    {
        "true", "false", "null", "in", "as", "break", "const", "continue", "else", "for", "function",
        "if", "import", "let", "loop", "package", "namespace", "return", "var", "void", "while",
    }
)

_PREC_COND, _PREC_OR, _PREC_AND, _PREC_REL, _PREC_ADD, _PREC_MUL, _PREC_UNARY, _PREC_MEMBER = range(1, 9)
_BINARY_PREC: Final[dict[str, int]] = {
    "||": _PREC_OR,
    "&&": _PREC_AND,
    "==": _PREC_REL, "!=": _PREC_REL, "<": _PREC_REL, "<=": _PREC_REL, ">": _PREC_REL, ">=": _PREC_REL,
    "in": _PREC_REL,
    "+": _PREC_ADD, "-": _PREC_ADD,
    "*": _PREC_MUL, "/": _PREC_MUL, "%": _PREC_MUL,
}


def is_plain_field(name: str) -> bool:
    """True if ``name`` can be written as ``.name`` in CEL (otherwise ``["name"]`` is used)."""
    return bool(_IDENT_RE.match(name)) and name not in RESERVED


def quote_string(s: str) -> str:
    """A double-quoted CEL string literal that both celpy's and cel-cpp's lexers accept."""
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\x{o:02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def quote_bytes(b: bytes) -> str:
    out = ['b"']
    for o in b:
        ch = chr(o)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif 0x20 <= o < 0x7F:
            out.append(ch)
        else:
            out.append(f"\\x{o:02x}")
    out.append('"')
    return "".join(out)


def _float_source(v: float) -> str:
    if math.isnan(v):
        return "(0.0 / 0.0)"
    if math.isinf(v):
        return "(1.0 / 0.0)" if v > 0 else "(-1.0 / 0.0)"
    r = repr(v)
    if "." not in r and "e" not in r and "E" not in r:
        r += ".0"
    return r


def literal_source(v: object) -> str:
    """CEL text for a constant (including whole JSON documents from bound variables).

    Ints beyond the int64 range (possible in JSON data, not in CEL) are written as ``uint`` when
    they fit, else as a double: the nearest CEL value, compared by value.
    """
    if v is None:
        return "null"
    if type(v) is bool:
        return "true" if v else "false"
    if type(v) is UInt:
        return f"{int(v)}u"
    if isinstance(v, int):
        if INT64_MIN <= v <= INT64_MAX:
            return str(int(v))
        if 0 <= v <= UINT64_MAX:
            return f"{int(v)}u"
        return _float_source(float(v))
    if type(v) is float:
        return _float_source(v)
    if type(v) is str:
        return quote_string(v)
    if type(v) is bytes:
        return quote_bytes(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(literal_source(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{literal_source(k)}: {literal_source(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write a {type(v).__name__} as a CEL literal")


def _lit_prec(v: object) -> int:
    # Numbers rank as unary so they get parentheses as a member operand: ``(1).x`` (``1.x``
    # would lex as the float ``1.``) and ``(-1).x``.
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return _PREC_UNARY
    return _PREC_MEMBER


def precedence(node: Node) -> int:
    if isinstance(node, Cond):
        return _PREC_COND
    if isinstance(node, Binary):
        return _BINARY_PREC[node.op]
    if isinstance(node, Unary):
        return _PREC_UNARY
    if isinstance(node, Lit):
        return _lit_prec(node.value)
    return _PREC_MEMBER


def to_source(node: Node) -> str:
    """CEL text for ``node``, with parentheses only where precedence requires them."""
    return _src(node)


def _wrap(node: Node, min_prec: int) -> str:
    s = _src(node)
    return f"({s})" if precedence(node) < min_prec else s


def _src(node: Node) -> str:
    if isinstance(node, Lit):
        return literal_source(node.value)
    if isinstance(node, Err):
        # A constant error has no CEL literal; a lookup of a missing key in an empty map is an
        # error in every CEL implementation and carries the reason in the key text.
        return "{}[" + quote_string(node.message) + "]"
    if isinstance(node, Ident):
        return node.name
    if isinstance(node, Select):
        base = _wrap(node.operand, _PREC_MEMBER)
        if is_plain_field(node.field):
            return f"{base}.{node.field}"
        return f"{base}[{quote_string(node.field)}]"
    if isinstance(node, Index):
        return f"{_wrap(node.operand, _PREC_MEMBER)}[{_src(node.index)}]"
    if isinstance(node, Unary):
        inner = _wrap(node.operand, _PREC_UNARY)
        if inner.startswith(node.op) or (node.op == "-" and isinstance(node.operand, Lit)):
            # Parsers cancel ``!!x``/``--x`` to ``x``, so a nested same operator needs parentheses;
            # ``-(1)`` keeps the tree shape (``-1`` would lex as one literal).
            return f"{node.op}({inner})"
        return f"{node.op}{inner}"
    if isinstance(node, Binary):
        prec = _BINARY_PREC[node.op]
        return f"{_wrap(node.left, prec)} {node.op} {_wrap(node.right, prec + 1)}"
    if isinstance(node, Cond):
        return f"{_wrap(node.cond, _PREC_OR)} ? {_wrap(node.then, _PREC_OR)} : {_wrap(node.otherwise, _PREC_COND)}"
    if isinstance(node, ListExpr):
        return "[" + ", ".join(_src(x) for x in node.items) + "]"
    if isinstance(node, MapExpr):
        return "{" + ", ".join(f"{_src(k)}: {_src(v)}" for k, v in node.entries) + "}"
    if isinstance(node, Has):
        return f"has({_wrap(node.operand, _PREC_MEMBER)}.{node.field})"
    if isinstance(node, Call):
        args = ", ".join(_src(a) for a in node.args)
        if node.target is None:
            return f"{node.function}({args})"
        return f"{_wrap(node.target, _PREC_MEMBER)}.{node.function}({args})"
    raise TypeError(f"unknown node {node!r}")
