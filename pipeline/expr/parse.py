"""CEL text -> :mod:`pipeline.expr.ast`, using celpy's lark grammar.

celpy's parser is reused (it follows the CEL spec grammar), but not its evaluator, which is
slow. The conversion also validates what a parser alone does not: every free identifier must
be one of the declared variables (``evnt.data.x`` is a compile error, not a silent no-match),
every function must exist, and macros must be well-formed. Doing that here means a typo fails
when the app loads rather than when the first event arrives.
"""

from __future__ import annotations

from typing import Final, TypeAlias

import lark
import lark.exceptions
from celpy.celparser import CELParseError, CELParser

from .ast import MACROS, TYPE_IDENTS, Binary, Call, Cond, Has, Ident, Index, ListExpr, Lit, MapExpr, Node, Select, Unary
from .errors import ExprError
from .literals import decode_bytes, decode_string
from .values import INT64_MAX, INT64_MIN, UINT64_MAX, UInt

#: Global functions of the CEL standard library.
GLOBAL_FUNCTIONS: Final[frozenset[str]] = frozenset(
    {"size", "int", "uint", "double", "string", "bytes", "bool", "dyn", "type", "timestamp", "duration", "matches"}
)
#: Receiver-style functions: the standard library plus the cel-go/cel-cpp ``strings`` extension.
METHODS: Final[frozenset[str]] = frozenset(
    {
        "size", "startsWith", "endsWith", "contains", "matches",
        "getDate", "getDayOfMonth", "getDayOfWeek", "getDayOfYear", "getFullYear", "getHours",
        "getMilliseconds", "getMinutes", "getMonth", "getSeconds",
        "charAt", "indexOf", "lastIndexOf", "lowerAscii", "upperAscii", "replace", "split", "substring",
        "trim", "join", "format", "reverse",
    }
    | MACROS
)

_REL_OPS: Final[dict[str, str]] = {
    "relation_lt": "<", "relation_le": "<=", "relation_gt": ">", "relation_ge": ">=",
    "relation_eq": "==", "relation_ne": "!=", "relation_in": "in",
}
_ADD_OPS: Final[dict[str, str]] = {"addition_add": "+", "addition_sub": "-"}
_MUL_OPS: Final[dict[str, str]] = {"multiplication_mul": "*", "multiplication_div": "/", "multiplication_mod": "%"}

#: A child in lark's parse tree: a rule (``Tree``) or a terminal (``Token``).
Branch: TypeAlias = lark.Tree[lark.Token] | lark.Token

_parser: CELParser | None = None


def _get_parser() -> CELParser:
    global _parser
    if _parser is None:
        _parser = CELParser()
    return _parser


def parse(source: str, variables: tuple[str, ...]) -> Node:
    """Parse and validate ``source``; raise :class:`ExprError` on any problem."""
    if not isinstance(source, str):
        raise ExprError(repr(source), f"expected a string, got {type(source).__name__}")
    if not source.strip():
        raise ExprError(source, "empty expression")
    try:
        tree: lark.Tree[lark.Token] = _get_parser().parse(source)
    except CELParseError as exc:
        raise ExprError(source, _syntax_problem(exc.__context__), exc.line, exc.column) from None
    except Exception as exc:  # noqa: BLE001 - lark can raise other errors for pathological input
        raise ExprError(source, f"syntax error: {exc}") from None
    try:
        return _Converter(source, frozenset(variables)).convert(tree, frozenset())
    except RecursionError:
        raise ExprError(source, "expression is too deeply nested") from None


def _syntax_problem(cause: BaseException | None) -> str:
    """A short description of a lark parse failure (the position is reported separately)."""
    if isinstance(cause, lark.exceptions.UnexpectedToken):
        tok = cause.token
        if tok.type == "$END":
            return "syntax error: unexpected end of expression"
        return f"syntax error: unexpected {str(tok)!r}"
    if isinstance(cause, lark.exceptions.UnexpectedCharacters):
        return f"syntax error: unexpected character {cause.char!r}"
    return "syntax error"


def _tree(b: Branch) -> lark.Tree[lark.Token]:
    """A child that the grammar makes a rule, never a terminal."""
    if isinstance(b, lark.Tree):
        return b
    raise TypeError(f"unexpected token {b!r} where the CEL grammar has a rule")


def _token(b: Branch) -> lark.Token:
    """A child that the grammar makes a terminal (an identifier or a literal), never a rule."""
    if isinstance(b, lark.Token):
        return b
    raise TypeError(f"unexpected rule {b.data!r} where the CEL grammar has a token")


class _Converter:
    def __init__(self, source: str, variables: frozenset[str]) -> None:
        self.source = source
        self.variables = variables

    def fail(self, problem: str, where: Branch | None = None) -> ExprError:
        line = column = None
        if isinstance(where, lark.Token):
            line, column = where.line, where.column
        elif isinstance(where, lark.Tree):
            meta = where.meta
            if not getattr(meta, "empty", True):
                line, column = meta.line, meta.column
        return ExprError(self.source, problem, line, column)

    def convert(self, b: Branch, scope: frozenset[str]) -> Node:
        t = _tree(b)
        data = t.data
        ch = t.children
        if data == "expr":
            if len(ch) == 1:
                return self.convert(ch[0], scope)
            return Cond(self.convert(ch[0], scope), self.convert(ch[1], scope), self.convert(ch[2], scope))
        if data in ("conditionalor", "conditionaland"):
            if len(ch) == 1:
                return self.convert(ch[0], scope)
            op = "||" if data == "conditionalor" else "&&"
            return Binary(op, self.convert(ch[0], scope), self.convert(ch[1], scope))
        if data in ("relation", "addition", "multiplication"):
            if len(ch) == 1:
                return self.convert(ch[0], scope)
            op_tree = _tree(ch[0])
            table = _REL_OPS if data == "relation" else _ADD_OPS if data == "addition" else _MUL_OPS
            return Binary(table[op_tree.data], self.convert(op_tree.children[0], scope), self.convert(ch[1], scope))
        if data == "unary":
            if len(ch) == 1:
                return self.convert(ch[0], scope)
            # Like cel-go and cel-cpp, a run of the same prefix operator cancels out in pairs:
            # ``!!x`` is ``x`` (not "x must be a bool") and ``--x`` is ``x``. Parentheses break a run.
            kind = _tree(ch[0]).data
            count = 0
            cur = t
            while cur.data == "unary" and len(cur.children) == 2 and _tree(cur.children[0]).data == kind:
                count += 1
                cur = _tree(cur.children[1])
            inner = self.convert(cur, scope)
            if count % 2 == 0:
                return inner
            return Unary("!" if kind == "unary_not" else "-", inner)
        if data in ("member", "primary", "paren_expr"):
            return self.convert(ch[0], scope)
        if data == "member_dot":
            return Select(self.convert(ch[0], scope), str(ch[1]))
        if data == "member_dot_arg":
            name_tok = _token(ch[1])
            args = _tree(ch[2]).children if len(ch) > 2 else []
            return self.method_call(t, name_tok, ch[0], args, scope)
        if data == "member_index":
            return Index(self.convert(ch[0], scope), self.convert(ch[1], scope))
        if data == "member_object":
            raise self.fail("message construction (Type{field: value}) is not supported", t)
        if data in ("ident_arg", "dot_ident_arg"):
            name_tok = _token(ch[0])
            args = _tree(ch[1]).children if len(ch) > 1 else []
            return self.global_call(t, name_tok, args, scope)
        if data in ("ident", "dot_ident"):
            tok = _token(ch[0])
            name = str(tok)
            if data == "dot_ident":
                # ``.x`` is x at the root scope. Outside a macro binding x that is plain x, so the AST keeps no dot;
                # inside one, the tree (and any residual printed from it) could not tell them apart: refused.
                if name in scope and (name in self.variables or name in TYPE_IDENTS):
                    raise self.fail(f"a leading-dot identifier .{name} inside a macro that binds {name} is not "
                                    "supported", tok)
                scope = frozenset()
            if name in scope or name in self.variables or name in TYPE_IDENTS:
                return Ident(name)
            known = ", ".join(sorted(self.variables)) or "none"
            raise self.fail(f"unknown variable {name!r} (known variables: {known})", tok)
        if data == "list_lit":
            items = _tree(ch[0]).children if ch else []
            return ListExpr(tuple(self.convert(x, scope) for x in items))
        if data == "map_lit":
            inits = _tree(ch[0]).children if ch else []
            entries: list[tuple[Node, Node]] = []
            seen: set[tuple[str, object]] = set()
            for i in range(0, len(inits), 2):
                k = self.convert(inits[i], scope)
                if isinstance(k, Lit) and isinstance(k.value, (str, int)):
                    # CEL map keys are equal across int and uint (0 == 0u), never across bool and int
                    same = ("bool" if type(k.value) is bool else "str" if type(k.value) is str else "num", k.value)
                    if same in seen:
                        raise self.fail(f"duplicate map key {k.value!r}", inits[i])
                    seen.add(same)
                entries.append((k, self.convert(inits[i + 1], scope)))
            return MapExpr(tuple(entries))
        if data == "literal":
            return Lit(self.literal(_token(ch[0])))
        raise self.fail(f"unsupported syntax ({data})", t)

    def literal(self, tok: lark.Token) -> object:
        kind = tok.type
        text = str(tok)
        if kind == "INT_LIT":
            v = _parse_int(text)
            if not INT64_MIN <= v <= INT64_MAX:
                raise self.fail(f"int literal {text} out of range", tok)
            return v
        if kind == "UINT_LIT":
            v = _parse_int(text[:-1])
            if not 0 <= v <= UINT64_MAX:
                raise self.fail(f"uint literal {text} out of range", tok)
            return UInt(v)
        if kind == "FLOAT_LIT":
            return float(text)
        if kind in ("STRING_LIT", "MLSTRING_LIT"):
            try:
                return decode_string(str(tok))
            except (ValueError, OverflowError) as exc:
                raise self.fail(f"invalid string literal: {exc}", tok) from None
        if kind == "BYTES_LIT":
            try:
                return decode_bytes(str(tok))
            except (ValueError, OverflowError) as exc:
                raise self.fail(f"invalid bytes literal: {exc}", tok) from None
        if kind == "BOOL_LIT":
            return text == "true"
        if kind == "NULL_LIT":
            return None
        raise self.fail(f"unsupported literal {text!r}", tok)

    def global_call(
        self, t: lark.Tree[lark.Token], name_tok: lark.Token, args: list[Branch], scope: frozenset[str]
    ) -> Node:
        name = str(name_tok)
        if name == "has":
            if len(args) != 1:
                raise self.fail("has() takes exactly one argument", name_tok)
            arg = self.convert(args[0], scope)
            if not isinstance(arg, Select):
                raise self.fail("has() argument must be a field selection such as has(event.data.x)", name_tok)
            return Has(arg.operand, arg.field)
        if name not in GLOBAL_FUNCTIONS:
            raise self.fail(f"unknown function {name}()", name_tok)
        return Call(name, tuple(self.convert(a, scope) for a in args))

    def method_call(
        self, t: lark.Tree[lark.Token], name_tok: lark.Token, target_tree: Branch, args: list[Branch],
        scope: frozenset[str],
    ) -> Node:
        name = str(name_tok)
        if name not in METHODS:
            raise self.fail(f"unknown function .{name}()", name_tok)
        target = self.convert(target_tree, scope)
        if name in MACROS:
            want = (2, 3) if name == "map" else (2,)
            if len(args) not in want:
                raise self.fail(f".{name}() takes {' or '.join(map(str, want))} arguments", name_tok)
            var_name = _ident_name(args[0])
            if var_name is None:
                raise self.fail(f"the first argument of .{name}() must be a variable name", name_tok)
            var = Ident(var_name)
            inner = scope | {var_name}
            return Call(name, (var, *(self.convert(a, inner) for a in args[1:])), target)
        return Call(name, tuple(self.convert(a, scope) for a in args), target)


def _ident_name(t: Branch) -> str | None:
    """The name if the subtree is nothing but an identifier (the loop variable of a macro)."""
    cur = t
    while isinstance(cur, lark.Tree) and len(cur.children) == 1 and cur.data not in ("ident", "paren_expr"):
        cur = cur.children[0]
    if isinstance(cur, lark.Tree) and cur.data == "ident":
        return str(cur.children[0])
    return None


def _parse_int(text: str) -> int:
    neg = text.startswith("-")
    body = text[1:] if neg else text
    v = int(body, 16) if body[:2].lower() == "0x" else int(body, 10)
    return -v if neg else v
