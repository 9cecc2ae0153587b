"""``debounce`` and ``batchEvents`` of a synced function (``POST /fn/register``), read into the JSON definition of
its ``functions`` record (pure). Both SDKs' spellings are read (inngest-js camelCase, inngest-py's
``serialization_alias`` sends camelCase too, snake_case is accepted as well); durations are time strings ("30s")
or ints of milliseconds. The values are checked by the same models as ``create_function``'s, so a synced function
gets the same ranges and the same refusals, naming the option."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from ..protocol.timestr import BadTimeString, duration_ms
from ..sdk.definitions import Batch, Debounce
from ..sdk.pending import BATCH_EXCLUDES


def _first(raw: dict[str, Any], *names: str) -> Any:
    for name in names:
        if raw.get(name) is not None:
            return raw[name]
    return None


def _ms(value: Any, what: str, problems: list[str]) -> int | None:
    if value is None or value == "":
        return None
    try:
        return duration_ms(value)
    except BadTimeString as exc:
        problems.append(f"{what}: {exc}")
        return None


def read_debounce(raw: Any, problems: list[str]) -> dict[str, Any] | None:
    if raw in (None, {}, ""):
        return None
    if not isinstance(raw, dict):
        problems.append(f"debounce: {raw!r} must be an object")
        return None
    period = _ms(raw.get("period"), "debounce.period", problems)
    timeout = _ms(raw.get("timeout"), "debounce.timeout", problems)
    key = raw.get("key") or None
    try:
        Debounce.model_validate({"period": period if period is not None else -1, "timeout": timeout, "key": key})
    except (ValidationError, ValueError, TypeError) as exc:
        problems.append(f"debounce: {_reason(exc)}")
        return None
    return {"period_ms": period, "timeout_ms": timeout, "key": key}


def read_batch(raw: Any, fn: dict[str, Any], problems: list[str]) -> dict[str, Any] | None:
    if raw in (None, {}, ""):
        return None
    if not isinstance(raw, dict):
        problems.append(f"batchEvents: {raw!r} must be an object")
        return None
    size = _first(raw, "maxSize", "max_size")
    timeout = _ms(raw.get("timeout"), "batchEvents.timeout", problems)
    key, if_exp = raw.get("key") or None, raw.get("if") or raw.get("if_exp") or None
    try:
        Batch.model_validate({"max_size": size, "timeout": timeout, "key": key, "if_exp": if_exp})
    except (ValidationError, ValueError, TypeError) as exc:
        problems.append(f"batchEvents: {_reason(exc)}")
        return None
    spellings = {"rate_limit": ("rateLimit", "rate_limit"), "cancel": ("cancel",), "debounce": ("debounce",),
                 "priority": ("priority",), "singleton": ("singleton",), "idempotency": ("idempotency",)}
    clash = [name for name in BATCH_EXCLUDES if _first(fn, *spellings[name]) not in (None, [], {}, "")]
    if clash:
        problems.append(f"batchEvents: cannot be combined with {', '.join(clash)} (as in Inngest)")
        return None
    return {"max_size": size, "timeout_ms": timeout, "key": key, "if": if_exp}


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(str(e.get("msg")) for e in exc.errors())
    return str(exc)
