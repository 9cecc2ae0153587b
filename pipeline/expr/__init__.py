"""CEL expressions for triggers and cancellations.

The hot path compiles the common CEL subset to plain Python closures (~0.1-1 µs per
evaluation); anything else runs on a full CEL evaluator (cel-expr-python, else celpy).
See ``docs/expressions.md`` for the supported subset and the semantics.
"""

from .api import Expr, Residual, ValueExpr, compile_expr, join_paths
from .ast import Node, to_source
from .errors import EvalFailure, ExprError
from .values import UInt, lookup_path, normalize_key_value

__all__ = [
    "EvalFailure",
    "Expr",
    "ExprError",
    "Node",
    "Residual",
    "UInt",
    "ValueExpr",
    "compile_expr",
    "join_paths",
    "lookup_path",
    "normalize_key_value",
    "to_source",
]
