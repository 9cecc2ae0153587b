"""``compile_expr``, ``Expr`` and ``Residual``: the entry points used by the SDK, matcher and canceller.

``Expr.partial`` gives a ``Residual`` and ``Residual.to_expr`` gives an ``Expr``, so the two classes
live here together; the partial evaluation itself is :mod:`pipeline.expr.residual`, on the AST.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Final

from . import residual
from .ast import Node, to_source
from .compile import Fn, compile_node, compile_predicate
from .errors import EvalFailure, ExprError, Unsupported
from .fallback import Predicate, build_full_evaluator, build_full_value
from .parse import parse

_VAR_RE: Final = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*\Z")


class Expr:
    """A compiled CEL predicate.

    ``evaluate(activation)`` is True only if the expression evaluates to boolean ``true``.
    ``activation`` maps variable names to plain JSON-like values. A missing field, a type error
    or any other CEL error gives False (no match); it never raises for bad data. It is the
    predicate itself, stored on the instance (not a method wrapping it): it runs for every
    event, and the extra call would cost about a tenth of a fast evaluation.

    ``compiled`` is True when the fast closure path is used and False when the expression needs
    the full evaluator (``backend`` names which: ``"cel-expr-python"`` or ``"celpy"``).
    Instances are immutable and safe to share between threads.
    """

    __slots__ = ("ast", "backend", "evaluate", "source", "variables")

    source: str
    ast: Node
    variables: tuple[str, ...]
    backend: str
    evaluate: Predicate

    def __init__(self, source: str, ast: Node, variables: tuple[str, ...], predicate: Predicate, backend: str) -> None:
        self.source = source
        self.ast = ast
        self.variables = variables
        self.backend = backend
        self.evaluate = predicate

    @classmethod
    def from_ast(cls, source: str, ast: Node, variables: tuple[str, ...]) -> Expr:
        """Compile an already validated tree; ``source`` must be CEL text for the same tree
        (the full evaluator compiles the text)."""
        try:
            return cls(source, ast, variables, compile_predicate(ast), "compiled")
        except Unsupported:
            predicate, backend = build_full_evaluator(source, variables)
            return cls(source, ast, variables, predicate, backend)
        except RecursionError:
            raise ExprError(source, "expression is too deeply nested") from None

    @property
    def compiled(self) -> bool:
        """True when the fast closure path is used (``backend == "compiled"``)."""
        return self.backend == "compiled"

    def partial(self, bindings: Mapping[str, object]) -> Residual:
        """Bind some variables to constants and fold (see :mod:`pipeline.expr.residual`)."""
        unknown = [k for k in bindings if k not in self.variables]
        if unknown:
            raise ValueError(f"cannot bind {unknown!r}: {self.source!r} has variables {list(self.variables)!r}")
        return Residual(residual.bind(self.ast, bindings), tuple(v for v in self.variables if v not in bindings))

    def __repr__(self) -> str:
        return f"Expr({self.source!r}, variables={self.variables!r}, backend={self.backend!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Expr) and self.source == other.source and self.variables == other.variables

    def __hash__(self) -> int:
        return hash((self.source, self.variables))


def compile_expr(source: str, variables: tuple[str, ...] = ("event",)) -> Expr:
    """Parse, validate and compile a CEL expression over ``variables``.

    Raises :class:`ExprError` for a syntax error, an unknown variable or function, or an
    expression no evaluator accepts. Results are cached: apps and residuals repeat sources.
    """
    if not isinstance(source, str):
        raise ExprError(repr(source), f"expected a string, got {type(source).__name__}")
    names: Iterable[object] = variables  # checked as it comes: not every caller is type-checked
    if isinstance(names, str) or not all(isinstance(v, str) and _VAR_RE.match(v) for v in names):
        raise ExprError(str(source), f"invalid variable names {variables!r}")
    return _compile_cached(source, tuple(variables))


@lru_cache(maxsize=2048)
def _compile_cached(source: str, variables: tuple[str, ...]) -> Expr:
    ast = parse(source, variables)
    return Expr.from_ast(source, ast, variables)


class Residual:
    """What is left of an expression after some variables were bound to constants."""

    __slots__ = ("ast", "variables")

    ast: Node
    variables: tuple[str, ...]

    def __init__(self, ast: Node, variables: tuple[str, ...]) -> None:
        self.ast = ast
        self.variables = variables

    @property
    def is_true(self) -> bool:
        """Folded to ``true``: matches every event."""
        return residual.is_true(self.ast)

    @property
    def is_false(self) -> bool:
        """Folded to a constant other than ``true`` (false, an error): can never match."""
        return residual.is_false(self.ast)

    def to_source(self) -> str:
        """Valid CEL text, re-parseable by :func:`compile_expr` over the remaining variables."""
        return to_source(self.ast)

    def equality_keys(self, var: str = "async") -> list[tuple[str, object]]:
        """Top-level conjuncts ``<var>.<path> == <literal>`` as ``(path, literal)`` pairs.

        The literal is normalized (an integral float becomes an int, a uint an int); bytes,
        list, map and NaN literals are not keys and stay in :meth:`without_keys`.
        """
        return residual.equality_keys(self.ast, var)

    def without_keys(self, var: str = "async") -> Residual:
        """The residual with the :meth:`equality_keys` conjuncts removed (``true`` if none left).

        Exact for the join: a conjunction is true iff every conjunct is true, and the removed
        ones are guaranteed true by the key match.
        """
        return Residual(residual.without_keys(self.ast, var), self.variables)

    def to_expr(self) -> Expr:
        """Compile the residual (over its remaining variables) without re-parsing."""
        return Expr.from_ast(self.to_source(), self.ast, self.variables)

    def __repr__(self) -> str:
        return f"Residual({self.to_source()!r})"

    def __eq__(self, other: object) -> bool:
        # By text, like __hash__: the nodes' dataclass equality compares literals with Python's ==,
        # so ``async.x == 1`` would equal ``async.x == true`` (and ``== 1.0``).
        return (isinstance(other, Residual) and self.variables == other.variables
                and self.to_source() == other.to_source())

    def __hash__(self) -> int:
        return hash((self.to_source(), self.variables))


def join_paths(expr: Expr, var: str = "async") -> list[str]:
    """Dotted paths of ``var`` compared for equality, in top-level conjuncts, with an expression
    that does not reference ``var`` (only other variables and literals).

    These conjuncts become :meth:`Residual.equality_keys` once the other variables are bound,
    so the cancel join can be partitioned by them. ``async.data.importId == event.data.importId``
    gives ``["data.importId"]``. An empty list means the join falls back to keying by event name.
    """
    return residual.join_key_paths(expr.ast, var)


class ValueExpr:
    """A compiled CEL expression whose *value* is wanted (a concurrency key, say), not a yes/no.

    ``value(activation)`` returns the value, or None when evaluation fails (a missing field):
    runs whose key cannot be computed share the None slot set rather than crash the owner.
    Only the compiled subset is accepted, so keys cost a closure call, never a CEL interpreter.
    """

    __slots__ = ("_fn", "source", "variables")

    def __init__(self, source: str, variables: tuple[str, ...], *, full: bool = False) -> None:
        """``full``: an expression outside the compiled subset runs on the full CEL evaluator instead of being
        refused (for mappings run once per record, such as a source's, where any CEL is welcome)."""
        if not isinstance(source, str):  # as parse() says it, before the cache hashes it
            raise ExprError(repr(source), f"expected a string, got {type(source).__name__}")
        try:
            self._fn = _compile_value(source, tuple(variables))
        except ExprError:
            if not full:
                raise
            parse(source, tuple(variables))  # the parser's errors (syntax, unknown variables) come first
            self._fn = build_full_value(source, tuple(variables))
        self.source = source
        self.variables = variables

    def value(self, activation: Mapping[str, object]) -> object:
        try:
            return self._fn(activation)
        except Exception:  # noqa: BLE001 - a CEL error (or bad data) gives no value
            return None

    def checked_value(self, activation: Mapping[str, object]) -> object:
        """The value, or :class:`EvalFailure` naming the expression and the CEL error: for callers that must
        say why a record could not be mapped (a source dead-letters it with that reason)."""
        try:
            return self._fn(activation)
        except KeyError as exc:
            raise EvalFailure(self.source, f"no such key: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - every CEL runtime error is the record's, reported as such
            raise EvalFailure(self.source, str(exc) or type(exc).__name__) from None


@lru_cache(maxsize=2048)
def _compile_value(source: str, variables: tuple[str, ...]) -> Fn:
    """The closure of a key expression, cached like :func:`compile_expr`: an app's functions often share a key
    (``event.data.account_id``), and each parse costs ~0.1 ms. Errors are raised again each time (not cached)."""
    ast = parse(source, variables)
    try:
        return compile_node(ast)
    except Unsupported as exc:
        raise ExprError(source, f"not supported in a key expression: {exc}") from None
