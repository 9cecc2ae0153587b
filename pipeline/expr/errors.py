"""Exceptions of the expression layer.

``ExprError`` is the only exception that leaves this package: it is raised when an expression
cannot be compiled (syntax error, unknown variable or function, misuse of a macro). Evaluation
never raises; a CEL runtime error simply means "no match".

``EvalError`` and ``Unsupported`` are internal signals: the first is a CEL runtime error inside
a compiled closure (caught by ``&&``/``||`` and at the top level), the second tells the compiler
that a node is outside the fast subset so the full evaluator must be used.
"""

from __future__ import annotations


class ExprError(ValueError):
    """A CEL expression that cannot be compiled.

    The message names the expression and the problem (with a 1-based line/column when known) so
    that an app fails at load time with an error a user can act on.
    """

    source: str
    problem: str
    line: int | None
    column: int | None

    def __init__(self, source: str, problem: str, line: int | None = None, column: int | None = None) -> None:
        self.source = source
        self.problem = problem
        self.line = line
        self.column = column
        where = f" at line {line}, column {column}" if line is not None and column is not None else ""
        super().__init__(f"invalid CEL expression {source!r}: {problem}{where}")

    def __reduce__(self) -> tuple[type[ExprError], tuple[str, str, int | None, int | None]]:
        # the default would call __init__ with the formatted message only (e.g. across processes)
        return (type(self), (self.source, self.problem, self.line, self.column))


class EvalFailure(ValueError):
    """A value expression that failed on one input (a missing field, a type mismatch): the message names the
    expression and the CEL error. Raised only by :meth:`pipeline.expr.api.ValueExpr.checked_value`."""

    def __init__(self, source: str, problem: str) -> None:
        self.source = source
        self.problem = problem
        super().__init__(f"CEL {source!r} failed: {problem}")


class EvalError(Exception):
    """A CEL runtime error (missing key, no matching overload, overflow, ...) in a compiled closure.

    Native Python exceptions (``KeyError``, ``TypeError``) raised by the closures mean the same
    thing; this class is used where Python would not raise on its own.
    """


class Unsupported(Exception):
    """Raised by the closure compiler for a node outside the fast subset (use the full evaluator)."""
