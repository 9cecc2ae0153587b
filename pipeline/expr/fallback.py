"""The full CEL evaluator, used for expressions outside the fast subset.

Preferred: cel-expr-python (Google's cel-cpp bindings, ~5 µs per evaluation). Its quirks:

* a runtime error is returned as an ERROR *value* (whose Python form is a truthy string), so
  the result is accepted only if ``value() is True``;
* the type checker rejects mixed-number literals such as ``100.0 == 100`` at compile time,
  while the CEL spec (and cel-cpp's runtime) compares numbers by value, so expressions are
  compiled with ``disable_check=True`` (variables are dynamic JSON anyway);
* the whole activation is converted eagerly, so an int outside int64 anywhere in the event
  makes the evaluation an error (no match).

Fallback of the fallback: celpy's interpreted runner (~150-400 µs; its transpiled runner
cannot take the identifier ``async``). celpy raises on ``100.0 == 100``, so its answers for
mixed-number comparisons differ from the spec; it is only used when cel-expr-python is absent.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

from .errors import EvalError, ExprError

if TYPE_CHECKING:
    import celpy.celtypes

Predicate = Callable[[Mapping[str, object]], bool]


# cel-expr-python ships .pyi files but no py.typed marker, so the type checker sees its module as
# untyped: these protocols are the part of its API used here (see cel_expr_python/cel.pyi).


class _CelValue(Protocol):
    def value(self) -> object: ...

    def type(self) -> object: ...

    def plain_value(self) -> object: ...


class _CelProgram(Protocol):
    def eval(self, *, data: Mapping[str, object]) -> _CelValue: ...


class _CelEnv(Protocol):
    def compile(self, expression: str, disable_check: bool = ...) -> _CelProgram: ...


_env_lock = threading.Lock()
_envs: dict[tuple[str, ...], _CelEnv] = {}


def _cel_env(variables: tuple[str, ...]) -> _CelEnv:
    """One cel-expr-python environment per variable set (creating one costs ~milliseconds)."""
    with _env_lock:
        env = _envs.get(variables)
        if env is None:
            from cel_expr_python import cel

            extensions: list[object] = []
            try:
                from cel_expr_python.ext.ext_strings import ExtStrings

                extensions.append(ExtStrings())
            except ImportError:  # pragma: no cover - extension missing from a build
                pass
            env = cel.NewEnv(variables={v: cel.Type.DYN for v in variables}, extensions=extensions)
            _envs[variables] = env
        return env


def _cel_expr_python(source: str, variables: tuple[str, ...]) -> Predicate:
    env = _cel_env(variables)
    program = env.compile(source, disable_check=True)

    def evaluate(activation: Mapping[str, object]) -> bool:
        try:
            return program.eval(data=activation).value() is True
        except Exception:  # noqa: BLE001 - unconvertible data etc. is "no match"
            return False

    return evaluate


def _celpy_converter() -> Callable[[object], celpy.celtypes.Value]:
    """celpy's conversion of an activation value to CEL types."""
    from celpy.adapter import json_to_cel

    # Annotated for parsed JSON only, json_to_cel takes any value: it also converts tuples and
    # datetimes, and raises ValueError/TypeError for the rest, which the caller makes "no match".
    convert: Callable[[object], celpy.celtypes.Value] = json_to_cel  # type: ignore[assignment]
    return convert


def _celpy(source: str, variables: tuple[str, ...]) -> Predicate:
    import celpy
    import celpy.celtypes

    env = celpy.Environment()
    program = env.program(env.compile(source))  # the interpreted runner (accepts ``async``)
    to_cel = _celpy_converter()
    bool_type = celpy.celtypes.BoolType

    def evaluate(activation: Mapping[str, object]) -> bool:
        try:
            result = program.evaluate({k: to_cel(v) for k, v in activation.items()})
        except Exception:  # noqa: BLE001 - CELEvalError and friends are "no match"
            return False
        return isinstance(result, bool_type) and bool(result)

    return evaluate


def build_full_evaluator(source: str, variables: tuple[str, ...]) -> tuple[Predicate, str]:
    """``(predicate, backend name)`` using the best available full CEL implementation."""
    problems: list[str] = []
    try:
        return _cel_expr_python(source, variables), "cel-expr-python"
    except ImportError as exc:
        problems.append(f"cel-expr-python unavailable ({exc})")
    except Exception as exc:  # noqa: BLE001 - cel-cpp rejected it; maybe celpy accepts it
        problems.append(f"cel-expr-python: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}")
    try:
        return _celpy(source, variables), "celpy"
    except Exception as exc:  # noqa: BLE001
        problems.append(f"celpy: {exc}")
    raise ExprError(source, "no CEL evaluator accepts it: " + "; ".join(problems))


ValueFn = Callable[[Mapping[str, object]], object]


def build_full_value(source: str, variables: tuple[str, ...]) -> ValueFn:
    """A full-CEL value evaluator (cel-expr-python), for value expressions outside the compiled subset
    (``string(x)``, ``size(...)``, macros, extensions). It raises :class:`EvalError` with CEL's message on a
    runtime error, so a caller can say why; ExprError if the expression does not compile."""
    try:
        from cel_expr_python import cel
    except ImportError as exc:
        raise ExprError(source, f"needs the full CEL evaluator (cel-expr-python): {exc}") from None
    try:
        program = _cel_env(variables).compile(source, disable_check=True)
    except Exception as exc:  # noqa: BLE001 - cel-cpp's compile errors come as several types
        raise ExprError(source, str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)) from None

    def value(activation: Mapping[str, object]) -> object:
        result = program.eval(data=activation)
        if result.type() == cel.Type.ERROR:
            raise EvalError(str(result.value()))
        return result.plain_value()

    return value
