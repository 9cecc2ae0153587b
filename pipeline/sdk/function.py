"""A registered function: its handler plus everything compiled from its definition at load time.

Compiling here (not on the hot path) means a bad CEL expression fails when the app loads,
with an error that names the function, the field and the expression, and the matcher and
canceller only ever call ready closures.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from ..expr import Expr, ExprError, ValueExpr, compile_expr, join_paths
from ..expr.ast import Binary, var_path
from ..protocol.ids import function_id
from .cron import BadCron, CronSchedule
from .definitions import (
    MAX_CANCEL_ENTRIES,
    MAX_CONCURRENCY_ENTRIES,
    Batch,
    Cancel,
    Concurrency,
    Debounce,
    DefinitionError,
    Priority,
    RateLimit,
    Singleton,
    Throttle,
    Timeouts,
    TriggerCron,
    TriggerEvent,
)
from .flow import (
    CompiledPriority,
    CompiledRateLimit,
    CompiledSingleton,
    CompiledThrottle,
    compile_idempotency,
    compile_priority,
    compile_rate_limit,
    compile_singleton,
    compile_throttle,
    flow_key_value,
)
from .pending import CompiledBatch, CompiledDebounce, compile_batch, compile_debounce, refuse_with_batch
from .waits import WaitNotDeclared, declared_waits


@dataclass(frozen=True)
class CompiledTrigger:
    """A trigger with its expression compiled. ``prefix`` is set for wildcard triggers (``app/user.*``)."""

    event: str
    expr: Expr | None
    prefix: str | None

    def matches_name(self, name: str) -> bool:
        return name.startswith(self.prefix) if self.prefix is not None else name == self.event


@dataclass(frozen=True)
class CompiledCancel:
    """A cancel entry with its condition compiled over (event, async) and the async path it joins on.

    ``join_path`` is the field of the incoming cancel event compared for equality with the
    run's event; it keys and partitions the join. None means the join is keyed by event name
    only (every signal of that name meets every listener: slower, see docs/architecture.md).
    """

    index: int
    spec: Cancel
    expr: Expr | None
    join_path: str | None
    timeout_ms: int
    event_path: str | None = None  # set when the whole condition is ``async.<join_path> == event.<event_path>``


INVOKE_JOIN_PATH = "data.invoke_correlation_id"  # step.invoke waits for function.finished keyed by this


@dataclass(frozen=True)
class CompiledWait:
    """An event name the function may wait for, and the ``async`` path its join is keyed by (None: by name)."""

    event: str
    join_path: str | None


@dataclass(frozen=True)
class CompiledConcurrency:
    """A concurrency limit with its key expression compiled over ``event`` (None = one slot set per function)."""

    index: int
    limit: int
    key: ValueExpr | None

    def slot_key(self, function_id: str, event: dict[str, Any]) -> str:
        """The name of the slot set a run of ``event`` uses: function, entry, and the key's value."""
        if self.key is None:
            return f"{function_id}\x1f{self.index}"
        value = self.key.value({"event": event})
        return f"{function_id}\x1f{self.index}\x1f{json.dumps(value, sort_keys=True, default=str)}"


@dataclass
class Function:
    """One function of an app. ``id`` is ``<app id>-<fn_id>``, Inngest's slug."""

    app_id: str
    fn_id: str
    name: str
    handler: Callable[..., Any]
    triggers: tuple[CompiledTrigger, ...]
    cancels: tuple[CompiledCancel, ...]
    retries: int
    timeouts: Timeouts | None
    is_async: bool = field(default=False)
    concurrency: tuple[CompiledConcurrency, ...] = ()
    logger: logging.Logger | None = None  # the client's logger: the base of ctx.logger
    waits: tuple[CompiledWait, ...] = ()  # the wait_for_event calls found in the handler's module
    crons: tuple[CronSchedule, ...] = ()  # TriggerCron schedules (fired by the run owner, see sdk/cron.py)
    # flow control that drops events before a run exists (pipeline/run_owner/admission.py)
    rate_limit: CompiledRateLimit | None = None
    idempotency: ValueExpr | None = None
    throttle: CompiledThrottle | None = None
    priority: CompiledPriority | None = None
    singleton: CompiledSingleton | None = None
    debounce: CompiledDebounce | None = None  # flow control (issue 21): pending in the run owner, sdk/pending.py
    batch: CompiledBatch | None = None

    def wait_paths(self, event: str) -> tuple[str | None, ...]:
        """The join paths the matcher signals ``event`` under for this function's waits (empty: none)."""
        return tuple(w.join_path for w in self.waits if w.event == event)

    @cached_property
    def id(self) -> str:
        """Read per run started (the matcher's hot path), so built once: app_id and fn_id never change."""
        return function_id(self.app_id, self.fn_id)

    def slot_keys(self, event: dict[str, Any]) -> list[str]:
        """The concurrency slot sets a run of ``event`` needs (empty: no limit)."""
        return [c.slot_key(self.id, event) for c in self.concurrency]

    def priority_s(self, event: dict[str, Any]) -> int:
        """The run's priority in seconds (0 without ``priority``)."""
        return 0 if self.priority is None else self.priority.seconds(event)

    @cached_property
    def _flow_keys(self) -> tuple[tuple[str, ValueExpr | None], ...]:
        """(option, its key or None) for every option whose runs or events must meet at one owner partition
        (concurrency and the flow-control options; docs/architecture.md). Each option adds its own entries.
        Read per run started (the matcher's hot path), so built once: a function's options never change."""
        keys: list[tuple[str, ValueExpr | None]] = [("concurrency", c.key) for c in self.concurrency]
        if self.rate_limit is not None:
            keys.append(("rate_limit", self.rate_limit.key))
        if self.idempotency is not None:
            keys.append(("idempotency", self.idempotency))
        if self.throttle is not None:
            keys.append(("throttle", self.throttle.key))
        if self.singleton is not None:
            keys.append(("singleton", self.singleton.key))
        if self.debounce is not None:
            keys.append(("debounce", self.debounce.key))
        if self.batch is not None:
            keys.append(("batch_events", self.batch.key))
        return tuple(keys)

    def owner_key(self, event: dict[str, Any]) -> str | None:
        """What decides the run owner's partition when the function has concurrency limits or flow control, else
        None.

        All the runs (and events) that share a slot set or a flow key must meet at one owner, which counts them
        exactly: a single keyed limit partitions by function and key value (the slot set's name, so runs of
        existing deployments do not move), options all keyed by one expression by function and its value, and
        anything else by function. Every flow key is evaluated here, in the matcher: a key that fails raises, and the
        event is dead-lettered with the reason."""
        keys = self._flow_keys
        if not keys:
            return None
        for option, key in keys:
            if key is not None and option != "concurrency":  # concurrency keys share a None slot set instead
                key.checked_value({"event": event})
        if len(keys) == 1 and self.concurrency and self.concurrency[0].key is not None:
            return self.concurrency[0].slot_key(self.id, event)
        sources = {key.source if key is not None else None for _, key in keys}
        first = keys[0][1]
        if len(sources) == 1 and first is not None:
            return flow_key_value(first, self.id, event)
        return self.id


def build_function(app_id: str, fn_id: str, handler: Callable[..., Any], *,
                   trigger: TriggerEvent | TriggerCron | list[TriggerEvent | TriggerCron],
                   name: str | None = None, cancel: list[Cancel] | Cancel | None = None, retries: int = 4,
                   timeouts: Timeouts | None = None,
                   concurrency: list[Concurrency] | Concurrency | None = None,
                   logger: logging.Logger | None = None, rate_limit: RateLimit | None = None,
                   idempotency: str | None = None, throttle: Throttle | None = None,
                   priority: Priority | None = None, singleton: Singleton | None = None,
                   debounce: Debounce | None = None, batch_events: Batch | None = None) -> Function:
    """Validate a definition and compile its expressions. Raises DefinitionError naming what is wrong."""
    full_id = function_id(app_id, fn_id)
    if not fn_id or any(c.isspace() for c in fn_id):
        raise DefinitionError(full_id, "fn_id", fn_id, "must be a non-empty slug without spaces")
    if retries < 0 or retries > 20:
        raise DefinitionError(full_id, "retries", retries, "must be between 0 and 20")
    triggers = trigger if isinstance(trigger, list) else [trigger]
    if not triggers:
        raise DefinitionError(full_id, "trigger", triggers, "at least one trigger is required")
    crons = []
    for t in triggers:
        if isinstance(t, TriggerCron):
            try:
                crons.append(CronSchedule(t.cron))
            except BadCron as exc:
                raise DefinitionError(full_id, "trigger", t.cron, str(exc)) from exc
    compiled_triggers = tuple(_compile_trigger(full_id, t) for t in triggers if not isinstance(t, TriggerCron))
    cancels = [cancel] if isinstance(cancel, Cancel) else list(cancel or [])
    if len(cancels) > MAX_CANCEL_ENTRIES:
        raise DefinitionError(full_id, "cancel", f"{len(cancels)} entries", f"at most {MAX_CANCEL_ENTRIES} are allowed")
    compiled_cancels = tuple(_compile_cancel(full_id, i, c) for i, c in enumerate(cancels))
    if not callable(handler):
        raise DefinitionError(full_id, "handler", handler, "must be callable")
    refuse_with_batch(full_id, batch_events, cancel=cancels, debounce=debounce, rate_limit=rate_limit,
                      idempotency=idempotency, priority=priority, singleton=singleton)
    limits = [concurrency] if isinstance(concurrency, Concurrency) else list(concurrency or [])
    if len(limits) > MAX_CONCURRENCY_ENTRIES:
        raise DefinitionError(full_id, "concurrency", f"{len(limits)} entries",
                              f"at most {MAX_CONCURRENCY_ENTRIES} are allowed")
    try:
        waits = tuple(dict.fromkeys(CompiledWait(w.event, INVOKE_JOIN_PATH) if w.invoke else
                                    _compile_wait(full_id, w.event, w.if_exp) for w in declared_waits(handler)))
    except WaitNotDeclared as exc:
        raise DefinitionError(full_id, "step.wait_for_event", "event", str(exc)) from exc
    return Function(app_id=app_id, fn_id=fn_id, name=name or fn_id, handler=handler, triggers=compiled_triggers,
                    cancels=compiled_cancels, retries=retries, timeouts=timeouts, waits=waits, crons=tuple(crons),
                    is_async=inspect.iscoroutinefunction(handler), logger=logger,
                    concurrency=tuple(_compile_concurrency(full_id, i, c) for i, c in enumerate(limits)),
                    rate_limit=compile_rate_limit(full_id, rate_limit),
                    idempotency=compile_idempotency(full_id, idempotency),
                    throttle=compile_throttle(full_id, throttle), priority=compile_priority(full_id, priority),
                    singleton=compile_singleton(full_id, singleton),
                    debounce=compile_debounce(full_id, debounce), batch=compile_batch(full_id, batch_events))


def _compile_wait(full_id: str, event: str, if_exp: str | None) -> CompiledWait:
    """A literal ``if_exp`` is compiled now (a typo fails at load time) and may key the join; others join by name."""
    if if_exp is None:
        return CompiledWait(event, None)
    try:
        expr = compile_expr(if_exp, ("event", "async"))
    except ExprError as exc:
        raise DefinitionError(full_id, "step.wait_for_event if_exp", if_exp, str(exc)) from exc
    paths = join_paths(expr, "async")
    return CompiledWait(event, paths[0] if paths else None)


def _compile_concurrency(full_id: str, index: int, c: Concurrency) -> CompiledConcurrency:
    if not isinstance(c, Concurrency):
        raise DefinitionError(full_id, f"concurrency[{index}]", c, "must be a pipeline.Concurrency")
    key = None
    if c.key:
        try:
            key = ValueExpr(c.key, ("event",))
        except ExprError as exc:
            raise DefinitionError(full_id, f"concurrency[{index}] key", c.key, str(exc)) from exc
    return CompiledConcurrency(index=index, limit=c.limit, key=key)


def _compile_trigger(full_id: str, t: TriggerEvent) -> CompiledTrigger:
    expr = None
    if t.expression:
        try:
            expr = compile_expr(t.expression, ("event",))
        except ExprError as exc:
            raise DefinitionError(full_id, "trigger expression", t.expression, str(exc)) from exc
    prefix = t.event[:-1] if t.event.endswith("*") else None
    return CompiledTrigger(event=t.event, expr=expr, prefix=prefix)


def _compile_cancel(full_id: str, index: int, c: Cancel) -> CompiledCancel:
    source = c.expression()
    expr = None
    path = None
    if source:
        try:
            expr = compile_expr(source, ("event", "async"))
        except ExprError as exc:
            raise DefinitionError(full_id, f"cancel[{index}] if_exp", source, str(exc)) from exc
        paths = join_paths(expr, "async")
        path = paths[0] if paths else None
    return CompiledCancel(index=index, spec=c, expr=expr, join_path=path, timeout_ms=c.timeout_ms(),
                          event_path=_plain_join(expr, path))


def _plain_join(expr: Expr | None, join_path: str | None) -> str | None:
    """The event-side path when the condition is exactly one equality between ``async`` and ``event`` fields.

    That is the common shape (``match=``, the seed's ``if``); for it the matcher builds the join key
    with one field lookup instead of a partial evaluation per scheduled run."""
    if expr is None or join_path is None:
        return None
    node = expr.ast
    if not isinstance(node, Binary) or node.op != "==":
        return None
    for a, b in ((node.left, node.right), (node.right, node.left)):
        if var_path(a, "async") == join_path:
            return var_path(b, "event")
    return None
