"""Flow-control options compiled at load time (rate limit, idempotency, throttle, priority, singleton; debounce and
batches are in :mod:`.pending`): their keys are CEL over ``event``, compiled once, so a typo fails when the app
loads, with an error naming the function, the option and the expression."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..expr import ExprError, ValueExpr
from .definitions import MAX_PRIORITY_S, DefinitionError, Priority, RateLimit, Singleton, Throttle


@dataclass(frozen=True)
class CompiledRateLimit:
    """``rate_limit`` compiled: Inngest's GCRA parameters (a start every ``period_ms / limit``, ``burst`` more at
    once) and the key over ``event`` (None: one limit for the function)."""

    limit: int
    period_ms: int
    key: ValueExpr | None

    @property
    def burst(self) -> int:
        """Inngest allows bursts of a tenth of the limit (ratelimit.go: ``MaxBurst: limit / 10``)."""
        return self.limit // 10


@dataclass(frozen=True)
class CompiledThrottle:
    """A throttle with its key compiled (see :class:`~.definitions.Throttle`)."""

    limit: int
    period_ms: int
    burst: int
    strict: bool
    key: ValueExpr | None
    key_source: str | None

    def key_of(self, function_id: str, event: dict[str, Any]) -> str:
        return flow_key_value(self.key, function_id, event)


@dataclass(frozen=True)
class CompiledSingleton:
    """A singleton with its key compiled (see :class:`~.definitions.Singleton`)."""

    mode: str
    key: ValueExpr | None
    key_source: str | None

    def key_of(self, function_id: str, event: dict[str, Any]) -> str:
        return flow_key_value(self.key, function_id, event)


@dataclass(frozen=True)
class CompiledPriority:
    """``Priority(run=...)`` compiled: :meth:`seconds` is the value clamped to ±600 s."""

    run: ValueExpr

    def seconds(self, event: dict[str, Any]) -> int:
        """The priority in seconds; a value that is not a number (or fails) counts as 0, as in Inngest."""
        value = self.run.value({"event": event})
        if isinstance(value, bool) or not isinstance(value, int | float):
            return 0
        return int(max(-MAX_PRIORITY_S, min(MAX_PRIORITY_S, value)))


def flow_key_value(expr: ValueExpr | None, function_id: str, event: dict[str, Any]) -> str:
    """A flow key: the function, and the key expression's value on ``event`` when keyed. A key that fails to
    evaluate raises :class:`~pipeline.expr.EvalFailure` (the matcher dead-letters the event with the reason)."""
    if expr is None:
        return function_id
    value = expr.checked_value({"event": event})
    return f"{function_id}\x1f{json.dumps(value, sort_keys=True, default=str)}"


def compile_key(full_id: str, field: str, source: str) -> ValueExpr:
    try:
        return ValueExpr(source, ("event",))
    except ExprError as exc:
        raise DefinitionError(full_id, field, source, str(exc)) from exc


def compile_rate_limit(full_id: str, spec: RateLimit | None) -> CompiledRateLimit | None:
    if spec is None:
        return None
    if not isinstance(spec, RateLimit):
        raise DefinitionError(full_id, "rate_limit", spec, "must be a pipeline.RateLimit")
    key = compile_key(full_id, "rate_limit key", spec.key) if spec.key else None
    return CompiledRateLimit(limit=spec.limit, period_ms=spec.period_ms(), key=key)


def compile_idempotency(full_id: str, source: str | None) -> ValueExpr | None:
    if source is None:
        return None
    if not str(source).strip():
        raise DefinitionError(full_id, "idempotency", source, "must be a CEL expression over event")
    return compile_key(full_id, "idempotency", source)


def optional_key(full_id: str, field: str, source: str | None) -> ValueExpr | None:
    return compile_key(full_id, field, source) if source else None


def compile_throttle(full_id: str, t: Throttle | None) -> CompiledThrottle | None:
    if t is None:
        return None
    if not isinstance(t, Throttle):
        raise DefinitionError(full_id, "throttle", t, "must be a pipeline.Throttle")
    return CompiledThrottle(limit=t.limit, period_ms=t.period_ms(), burst=t.burst or 1, strict=t.strict,
                            key=optional_key(full_id, "throttle key", t.key), key_source=t.key or None)


def compile_priority(full_id: str, p: Priority | None) -> CompiledPriority | None:
    if p is None:
        return None
    if not isinstance(p, Priority):
        raise DefinitionError(full_id, "priority", p, "must be a pipeline.Priority")
    run = optional_key(full_id, "priority run", p.run)
    assert run is not None
    return CompiledPriority(run=run)


def compile_singleton(full_id: str, s: Singleton | None) -> CompiledSingleton | None:
    if s is None:
        return None
    if not isinstance(s, Singleton):
        raise DefinitionError(full_id, "singleton", s, "must be a pipeline.Singleton")
    return CompiledSingleton(mode=s.mode, key=optional_key(full_id, "singleton key", s.key), key_source=s.key or None)
