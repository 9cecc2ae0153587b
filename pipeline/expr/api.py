"""``compile_expr`` and ``Expr``: the entry points used by the SDK, matcher and canceller."""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Final

from .ast import Node
from .compile import compile_node, compile_predicate
from .errors import ExprError, Unsupported
from .fallback import Predicate, build_full_evaluator
from .parse import parse
from .residual import Residual, partial

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
        return partial(self.ast, self.variables, bindings)

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
    if isinstance(variables, str) or not all(isinstance(v, str) and _VAR_RE.match(v) for v in variables):
        raise ExprError(str(source), f"invalid variable names {variables!r}")
    return _compile_cached(source, tuple(variables))


@lru_cache(maxsize=2048)
def _compile_cached(source: str, variables: tuple[str, ...]) -> Expr:
    ast = parse(source, variables)
    return Expr.from_ast(source, ast, variables)


class ValueExpr:
    """A compiled CEL expression whose *value* is wanted (a concurrency key, say), not a yes/no.

    ``value(activation)`` returns the value, or None when evaluation fails (a missing field):
    runs whose key cannot be computed share the None slot set rather than crash the owner.
    Only the compiled subset is accepted, so keys cost a closure call, never a CEL interpreter.
    """

    __slots__ = ("_fn", "source", "variables")

    def __init__(self, source: str, variables: tuple[str, ...]) -> None:
        ast = parse(source, variables)
        try:
            self._fn = compile_node(ast)
        except Unsupported as exc:
            raise ExprError(source, f"not supported in a key expression: {exc}") from None
        self.source = source
        self.variables = variables

    def value(self, activation: Mapping[str, object]) -> object:
        try:
            return self._fn(activation)
        except Exception:  # noqa: BLE001 - a CEL error (or bad data) gives no value
            return None
