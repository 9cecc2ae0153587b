"""Which listeners a scheduled run registers, and which signals an incoming event sends.

Both sides come from the same compiled cancel entries, so they always agree on the join key.
Pure logic: used by the matcher (register at schedule time, signal on every event), by the
run owner (remove a finished run's listeners), and by tests.

A function is described here by the :class:`JoinedFunction` protocol (what the join reads of it), not by the
SDK's class, so the contract depends on no service and not on the SDK: ``pipeline.sdk.function.Function``
satisfies it, and so will a function synced from an app over HTTP.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..expr import Expr, ExprError, compile_expr, join_paths, lookup_path
from .keys import join_key
from .records import CancelListener


class CancelSpec(Protocol):
    """The declared side of a cancel rule: the event that cancels."""

    @property
    def event(self) -> str: ...


class CancelRule(Protocol):
    """A cancel rule compiled: its condition over (event, async) and the paths its join is keyed by."""

    @property
    def spec(self) -> CancelSpec: ...
    @property
    def expr(self) -> Expr | None: ...
    @property
    def join_path(self) -> str | None: ...
    @property
    def event_path(self) -> str | None: ...
    @property
    def timeout_ms(self) -> int: ...


class AwaitedEvent(Protocol):
    """An event name a function may wait for, and the ``async`` path its join is keyed by (None: by name)."""

    @property
    def event(self) -> str: ...
    @property
    def join_path(self) -> str | None: ...


class JoinedFunction(Protocol):
    """What the join reads of a function."""

    @property
    def id(self) -> str: ...
    @property
    def cancels(self) -> Sequence[CancelRule]: ...
    @property
    def waits(self) -> Sequence[AwaitedEvent]: ...
    def wait_paths(self, event: str) -> tuple[str | None, ...]: ...


def listeners_for(
    fn: JoinedFunction, event: dict[str, Any], run_id: str, received_at: int, queued_at: int
) -> list[CancelListener]:
    """CancelListener records for a run of ``fn`` triggered by ``event``.

    ``event.*`` is substituted into each condition; a residual of ``false`` registers nothing.
    """
    out = []
    for entry in fn.cancels:
        listener = _listener(entry, fn, event, run_id, received_at, queued_at)
        if listener is not None:
            out.append(listener)
    return out


def _listener(
    entry: CancelRule, fn: JoinedFunction, event: dict[str, Any], run_id: str, received_at: int, queued_at: int
) -> CancelListener | None:
    fast = _plain_join_key(entry, event)
    if fast is not None:
        key, residual_src = fast, None
    else:
        joined = _join(entry.spec.event, entry.expr, entry.join_path, event)
        if joined is None:
            return None
        key, residual_src = joined
    record: CancelListener = {
        "join_key": key,
        "run_id": run_id,
        "function_id": fn.id,
        "trigger_event_id": event["id"],
        "trigger_received_at": received_at,
        "expires_at": queued_at + entry.timeout_ms,
        "residual": residual_src,
        "owner_partition": -1,
        "wait_step": None,
    }
    return record


def _join(
    event_name: str, expr: Expr | None, join_path: str | None, event: dict[str, Any]
) -> tuple[str, str | None] | None:
    """(join key, residual over ``async`` or None) of a condition with the run's ``event`` bound; None when it
    can never match."""
    if expr is None:
        return join_key(event_name), None
    residual = expr.partial({"event": event})
    if residual.is_false:
        return None
    if join_path is not None:
        keys = residual.equality_keys("async")
        values = [v for p, v in keys if p == join_path]
        if not values:
            return None  # the equality folded away (e.g. the run's field is missing): it can never match
        # the key decides alone only when nothing else is left: no other equality and a true remainder
        alone = len(keys) == 1 and residual.without_keys("async").is_true
        return join_key(event_name, join_path, values[0]), None if alone else residual.to_source()
    return join_key(event_name), None if residual.is_true else residual.to_source()


class WaitNotRoutable(ValueError):
    """A wait the matcher would not signal for: not found in the module, or its condition is not valid CEL."""


def wait_listener(
    fn: JoinedFunction,
    event: dict[str, Any],
    run_id: str,
    step_id: str,
    wait_event: str,
    if_exp: str | None,
    since: int,
    timeout_at: int,
) -> CancelListener | None:
    """The CancelListener record of a ``step.wait_for_event`` (``wait_step`` set), or None when its condition can
    never hold for this run. Raises :class:`WaitNotRoutable` for a wait the matcher does not signal.

    The join is keyed by the condition's ``async`` equality path when the matcher signals the event under that
    path (a literal ``if_exp`` in the source), else by the event name alone."""
    paths = fn.wait_paths(wait_event)
    if not paths:
        raise WaitNotRoutable(
            f"wait_for_event(event={wait_event!r}) was not found in the source of {fn.id}'s "
            "module; the matcher does not watch that event"
        )
    expr = None
    path = None
    if if_exp:
        try:
            expr = compile_expr(if_exp, ("event", "async"))
        except ExprError as exc:
            raise WaitNotRoutable(str(exc)) from None
        found = join_paths(expr, "async")
        path = found[0] if found and found[0] in paths else None
    if path is None and None not in paths:
        raise WaitNotRoutable(
            f"wait_for_event(event={wait_event!r}, if_exp={if_exp!r}): the condition differs from "
            "the literal one in the source, so the matcher does not signal it by name"
        )
    joined = _join(wait_event, expr, path, event)
    if joined is None:
        return None
    key, residual = joined
    record: CancelListener = {
        "join_key": key,
        "run_id": run_id,
        "function_id": fn.id,
        "trigger_event_id": event["id"],
        "trigger_received_at": since,
        "expires_at": timeout_at,
        "residual": residual,
        "owner_partition": -1,
        "wait_step": step_id,
    }
    return record


def _plain_join_key(entry: CancelRule, event: dict[str, Any]) -> str | None:
    """The join key of ``async.P == event.Q`` by one lookup (same answer as the residual path, see
    tests/unit/test_cancel_join.py); None when the shape or the value needs the general path."""
    if entry.event_path is None or entry.join_path is None:
        return None
    found, value = lookup_path(event, entry.event_path)
    if not found or type(value) not in (str, int):
        return None
    return join_key(entry.spec.event, entry.join_path, value)


@dataclass(frozen=True)
class SignalRoute:
    """For one cancel event name: the equality paths listeners join on (None = keyed by name only)."""

    event: str
    paths: tuple[str | None, ...]


def signal_routes(functions: Sequence[JoinedFunction]) -> dict[str, SignalRoute]:
    """Per cancel or awaited event name, the distinct join paths in use across all functions' cancel entries
    and ``wait_for_event`` calls."""
    paths: dict[str, list[str | None]] = {}
    for fn in functions:
        pairs = [(entry.spec.event, entry.join_path) for entry in fn.cancels]
        pairs += [(wait.event, wait.join_path) for wait in fn.waits]
        for name, path in pairs:
            lst = paths.setdefault(name, [])
            if path not in lst:
                lst.append(path)
    return {name: SignalRoute(name, tuple(p)) for name, p in paths.items()}


def signal_keys(route: SignalRoute, event: dict[str, Any]) -> list[str]:
    """The join keys an incoming event is signalled under (one per path it has a value for)."""
    keys = []
    for path in route.paths:
        if path is None:
            keys.append(join_key(route.event))
            continue
        found, value = lookup_path(event, path)
        if found and (value is None or isinstance(value, (str, int, float, bool))):
            keys.append(join_key(route.event, path, value))
    return keys
