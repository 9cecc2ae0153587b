"""Partial evaluation of CEL expressions and the equality keys of the cancel join, on the AST.

A cancel entry's ``if`` is CEL over ``event`` (the run's triggering event, known when the run
starts) and ``async`` (a later candidate cancel event). Binding ``event`` and folding leaves a
*residual* over ``async`` only, e.g.::

    async.data.importId == event.data.importId && event.data.n > 2
    --(event = {"data": {"importId": "abc", "n": 5}})-->
    async.data.importId == "abc"

The residual's top-level ``async.<path> == <literal>`` conjuncts are the join keys: the cancel
join is partitioned by ``normalize_key_value(literal)`` so that an incoming cancel event is only
checked against the runs waiting for exactly its key (found with ``lookup_path``) instead of
every run waiting for that event name.

Folding follows CEL error semantics (``false && error`` is false, ``!error`` is an error), with
one simplification that is exact for a predicate: where only "is the result ``true``?" matters
(the root, and the operands of a root ``&&``/``||`` or the branches of a root ``?:``), an error
or non-bool constant is the same as ``false``. So a comparison with a missing field of the bound
event folds to an error, and at the top level to ``false``.

This module works on :mod:`pipeline.expr.ast` nodes only. The objects callers hold,
:class:`~pipeline.expr.api.Expr` (whose ``partial`` binds) and
:class:`~pipeline.expr.api.Residual` (which compiles back to an ``Expr``), refer to each other and
live together in :mod:`pipeline.expr.api`, which imports this module and not the other way round.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Final

from .ast import (
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
    and_all,
    chain,
    conjuncts,
    flatten,
    free_vars,
    is_const,
    is_macro,
    var_path,
)
from .compile import compile_node, const_of
from .errors import Unsupported
from .values import UInt

_BOOL_OPS: Final[frozenset[str]] = frozenset({"==", "!=", "<", "<=", ">", ">=", "in", "&&", "||"})
_BOOL_CALLS: Final[frozenset[str]] = frozenset(
    {"startsWith", "endsWith", "contains", "matches", "exists", "all", "exists_one"}
)


def substitute(node: Node, bindings: Mapping[str, object], bound: frozenset[str] = frozenset()) -> Node:
    """Replace free identifiers named in ``bindings`` by constants (macro loop variables shadow)."""
    if isinstance(node, Ident):
        if node.name in bindings and node.name not in bound:
            return Lit(bindings[node.name])
        return node
    if isinstance(node, (Lit, Err)):
        return node
    if isinstance(node, Select):
        return Select(substitute(node.operand, bindings, bound), node.field)
    if isinstance(node, Has):
        return Has(substitute(node.operand, bindings, bound), node.field)
    if isinstance(node, Index):
        return Index(substitute(node.operand, bindings, bound), substitute(node.index, bindings, bound))
    if isinstance(node, Unary):
        return Unary(node.op, substitute(node.operand, bindings, bound))
    if isinstance(node, Binary):
        return Binary(node.op, substitute(node.left, bindings, bound), substitute(node.right, bindings, bound))
    if isinstance(node, Cond):
        return Cond(*(substitute(x, bindings, bound) for x in (node.cond, node.then, node.otherwise)))
    if isinstance(node, ListExpr):
        return ListExpr(tuple(substitute(x, bindings, bound) for x in node.items))
    if isinstance(node, MapExpr):
        return MapExpr(tuple((substitute(k, bindings, bound), substitute(v, bindings, bound)) for k, v in node.entries))
    if isinstance(node, Call):
        target = substitute(node.target, bindings, bound) if node.target is not None else None
        if is_macro(node):
            loop = node.args[0]
            assert isinstance(loop, Ident)
            inner = bound | {loop.name}
            return Call(node.function, (loop, *(substitute(a, bindings, inner) for a in node.args[1:])), target)
        return Call(node.function, tuple(substitute(a, bindings, bound) for a in node.args), target)
    raise TypeError(f"unknown node {node!r}")


def _is_boolish(node: Node) -> bool:
    """True if ``node`` can only evaluate to a bool or an error (so ``x && true`` may become ``x``)."""
    if isinstance(node, Binary):
        return node.op in _BOOL_OPS
    if isinstance(node, Unary):
        return node.op == "!"
    if isinstance(node, Has):
        return True
    if isinstance(node, Lit):
        return type(node.value) is bool
    if isinstance(node, Call):
        return node.function in _BOOL_CALLS
    if isinstance(node, Cond):
        return _is_boolish(node.then) and _is_boolish(node.otherwise)
    return False


def _evaluate_const(node: Node) -> Node:
    """Fold ``node`` (whose operands are constants) to ``Lit``/``Err``, if it is in the fast subset."""
    try:
        fn = compile_node(node)
    except Unsupported:
        return node
    c = const_of(fn)
    if c is None:
        return node
    return Lit(c[1]) if c[0] else Err(str(c[1]))


_FALSE: Final = Lit(False)


def _is_lit(node: Node, value: bool) -> bool:
    return isinstance(node, Lit) and node.value is value


def fold(node: Node, truth: bool = True) -> Node:
    """Fold constant subexpressions.

    ``truth`` means only "is the value ``true``?" matters here (see the module docstring); then
    every constant other than ``true`` becomes ``false``.
    """
    out = _fold(node, truth)
    if truth and is_const(out) and not _is_lit(out, True):
        return _FALSE
    return out


def _fold(node: Node, truth: bool) -> Node:
    if isinstance(node, (Lit, Err, Ident)):
        return node
    if isinstance(node, Binary) and node.op in ("&&", "||"):
        return _fold_logic(node, truth)
    if isinstance(node, Cond):
        cond = fold(node.cond, False)
        then = fold(node.then, truth)
        otherwise = fold(node.otherwise, truth)
        if _is_lit(cond, True):
            return then
        if _is_lit(cond, False):
            return otherwise
        if is_const(cond):
            return Err("ternary condition is not a bool")
        return Cond(cond, then, otherwise)
    new: Node  # the node with folded operands
    parts: list[Node]  # its operands
    if isinstance(node, Select):
        new = Select(fold(node.operand, False), node.field)
        parts = [new.operand]
    elif isinstance(node, Has):
        new = Has(fold(node.operand, False), node.field)
        parts = [new.operand]
    elif isinstance(node, Index):
        new = Index(fold(node.operand, False), fold(node.index, False))
        parts = [new.operand, new.index]
    elif isinstance(node, Unary):
        new = Unary(node.op, fold(node.operand, False))
        parts = [new.operand]
    elif isinstance(node, Binary):
        new = Binary(node.op, fold(node.left, False), fold(node.right, False))
        parts = [new.left, new.right]
    elif isinstance(node, ListExpr):
        new = ListExpr(tuple(fold(x, False) for x in node.items))
        parts = list(new.items)
    elif isinstance(node, MapExpr):
        new = MapExpr(tuple((fold(k, False), fold(v, False)) for k, v in node.entries))
        parts = [x for kv in new.entries for x in kv]
    elif isinstance(node, Call):
        target = fold(node.target, False) if node.target is not None else None
        if is_macro(node):
            # the body references the loop variable: fold inside it, never evaluate the macro here
            return Call(node.function, (node.args[0], *(fold(a, False) for a in node.args[1:])), target)
        args = tuple(fold(a, False) for a in node.args)
        new = Call(node.function, args, target)
        parts = [*([target] if target is not None else []), *args]
    else:
        raise TypeError(f"unknown node {node!r}")
    for p in parts:
        if isinstance(p, Err):
            return p  # every operator other than && || ?: propagates an operand's error
    if all(is_const(p) for p in parts):
        return _evaluate_const(new)
    return new


def _fold_logic(node: Binary, truth: bool) -> Node:
    op = node.op
    absorbing = op == "||"
    identity = not absorbing
    items = [fold(x, truth) for x in flatten(node, op)]
    if any(_is_lit(x, absorbing) for x in items):
        return Lit(absorbing)
    if truth:
        # only "is it true?" matters: in &&, a non-true constant makes it never true; in ||, a
        # non-true constant operand can never make it true, so it can be dropped
        if op == "&&" and any(is_const(x) and not _is_lit(x, True) for x in items):
            return _FALSE
        live = [x for x in items if not is_const(x)]
        if not live:
            return Lit(identity)
        return chain(op, live)
    live = [x for x in items if not _is_lit(x, identity)]
    if not live:
        return Lit(identity)
    if len(live) == 1 and len(items) > 1 and not _is_boolish(live[0]):
        live.append(Lit(identity))  # keep the operator so a non-bool operand is still an error
    if all(is_const(x) for x in live):
        return _evaluate_const(chain(op, live))
    return chain(op, live)


# --------------------------------------------------------------------------------------------
# equality keys


def _key_literal(v: object) -> tuple[bool, object]:
    """Whether a literal can be a join key, and its normalized form (integral float -> int)."""
    if type(v) is str or type(v) is bool or v is None:
        return True, v
    if type(v) is int or type(v) is UInt:
        return True, int(v)
    if type(v) is float:
        if math.isnan(v):
            return False, None  # NaN equals nothing; keep the conjunct in the residual
        if v.is_integer():
            return True, int(v)
        return True, v
    return False, None  # bytes, lists and maps are not keys


def _equality_key(node: Node, var: str) -> tuple[str, object] | None:
    if not (isinstance(node, Binary) and node.op == "=="):
        return None
    for path_side, lit_side in ((node.left, node.right), (node.right, node.left)):
        if isinstance(lit_side, Lit):
            path = var_path(path_side, var)
            if path is not None:
                ok, value = _key_literal(lit_side.value)
                if ok:
                    return path, value
    return None


def bind(ast: Node, bindings: Mapping[str, object]) -> Node:
    """``ast`` with the variables in ``bindings`` replaced by their values and constants folded."""
    return fold(substitute(ast, bindings), truth=True)


def is_true(node: Node) -> bool:
    """Folded to ``true``: matches everything."""
    return _is_lit(node, True)


def is_false(node: Node) -> bool:
    """Folded to a constant other than ``true`` (false, an error): can never match."""
    return is_const(node) and not _is_lit(node, True)


def equality_keys(node: Node, var: str) -> list[tuple[str, object]]:
    """Top-level conjuncts ``<var>.<path> == <literal>`` as ``(path, normalized literal)`` pairs."""
    keys: list[tuple[str, object]] = []
    for c in conjuncts(node):
        k = _equality_key(c, var)
        if k is not None:
            keys.append(k)
    return keys


def without_keys(node: Node, var: str) -> Node:
    """``node`` without the :func:`equality_keys` conjuncts (``true`` if none is left)."""
    return and_all([c for c in conjuncts(node) if _equality_key(c, var) is None])


def join_key_paths(node: Node, var: str) -> list[str]:
    """Dotted paths of ``var`` compared for equality, in top-level conjuncts, with an expression
    that does not reference ``var`` (see :func:`pipeline.expr.api.join_paths`)."""
    out: list[str] = []
    for c in conjuncts(node):
        if not (isinstance(c, Binary) and c.op == "=="):
            continue
        for path_side, other in ((c.left, c.right), (c.right, c.left)):
            path = var_path(path_side, var)
            if path is not None and var not in free_vars(other):
                if path not in out:
                    out.append(path)
                break
    return out
