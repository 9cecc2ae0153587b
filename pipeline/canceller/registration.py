"""Which listeners a scheduled run registers, and which signals an incoming event sends.

Both sides come from the same compiled cancel entries, so they always agree on the join key.
Pure logic: used by the matcher (register at schedule time, signal on every event), by the
run owner (remove a finished run's listeners), and by tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..expr import lookup_path
from ..sdk.function import CompiledCancel, Function
from .keys import join_key


def listeners_for(fn: Function, event: dict[str, Any], run_id: str, received_at: int,
                  queued_at: int) -> list[dict[str, Any]]:
    """CancelListener records for a run of ``fn`` triggered by ``event``.

    ``event.*`` is substituted into each condition; a residual of ``false`` registers nothing.
    """
    out = []
    for entry in fn.cancels:
        listener = _listener(entry, fn, event, run_id, received_at, queued_at)
        if listener is not None:
            out.append(listener)
    return out


def _listener(entry: CompiledCancel, fn: Function, event: dict[str, Any], run_id: str, received_at: int,
              queued_at: int) -> dict[str, Any] | None:
    residual_src: str | None = None
    key = join_key(entry.spec.event)
    fast = _plain_join_key(entry, event)
    if fast is not None:
        key = fast
    elif entry.expr is not None:
        residual = entry.expr.partial({"event": event})
        if residual.is_false:
            return None
        if entry.join_path is not None:
            keys = residual.equality_keys("async")
            values = [v for p, v in keys if p == entry.join_path]
            if not values:
                return None  # the equality folded away (e.g. the run's field is missing): it can never match
            key = join_key(entry.spec.event, entry.join_path, values[0])
            # the key decides alone only when nothing else is left: no other equality and a true remainder
            if len(keys) > 1 or not residual.without_keys("async").is_true:
                residual_src = residual.to_source()
        elif not residual.is_true:
            residual_src = residual.to_source()
    return {
        "join_key": key, "run_id": run_id, "function_id": fn.id, "trigger_event_id": event["id"],
        "trigger_received_at": received_at, "expires_at": queued_at + entry.timeout_ms, "residual": residual_src,
    }


def _plain_join_key(entry: CompiledCancel, event: dict[str, Any]) -> str | None:
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


def signal_routes(functions: list[Function]) -> dict[str, SignalRoute]:
    """Per cancel event name, the distinct join paths in use across all functions' cancel entries."""
    paths: dict[str, list[str | None]] = {}
    for fn in functions:
        for entry in fn.cancels:
            lst = paths.setdefault(entry.spec.event, [])
            if entry.join_path not in lst:
                lst.append(entry.join_path)
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
