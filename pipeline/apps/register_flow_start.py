"""The ``throttle``, ``priority`` and ``singleton`` options of a sync (``POST /fn/register``), read (pure).

Both SDKs spell them the same way: ``throttle: {limit, period, key?, burst?}`` (``period`` a time string such
as ``"10s"``, or ms), ``priority: {run}``, ``singleton: {key?, mode}``. Each is checked with the same pydantic
model as ``create_function`` takes (same ranges), and stored in the function's JSON ``definition`` in a plain
form (``period_ms``) that :mod:`pipeline.sdk.synced` compiles back.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from ..protocol.timestr import BadTimeString, duration_ms
from ..sdk.definitions import Priority, Singleton, Throttle


def _problem(name: str, exc: ValidationError) -> str:
    first = exc.errors()[0]
    return f"{name}: {first.get('msg', str(exc))}"


def read_flow_start(raw: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    """``{"throttle": ..., "priority": ..., "singleton": ...}`` for the definition (None where unset); each
    problem found is appended to ``problems``."""
    out: dict[str, Any] = {"throttle": None, "priority": None, "singleton": None}
    throttle = raw.get("throttle")
    if throttle not in (None, {}):
        try:
            if not isinstance(throttle, dict):
                raise BadTimeString(f"{throttle!r} must be an object")
            period = duration_ms(throttle.get("period"))
            t = Throttle.model_validate({"limit": throttle.get("limit"), "period": period,
                                         "key": throttle.get("key") or None, "burst": throttle.get("burst") or 1,
                                         "strict": bool(throttle.get("strict", False))})
            out["throttle"] = {"limit": t.limit, "period_ms": t.period_ms(), "key": t.key, "burst": t.burst,
                               "strict": t.strict}
        except BadTimeString as exc:
            problems.append(f"throttle: {exc}")
        except ValidationError as exc:
            problems.append(_problem("throttle", exc))
    priority = raw.get("priority")
    if priority not in (None, {}):
        try:
            run = priority.get("run") if isinstance(priority, dict) else priority
            if run:  # inngest-js may send {} or {run: undefined}: no priority
                out["priority"] = {"run": Priority(run=run).run}
        except ValidationError as exc:
            problems.append(_problem("priority", exc))
    singleton = raw.get("singleton")
    if singleton not in (None, {}):
        try:
            if not isinstance(singleton, dict):
                raise ValueError(f"{singleton!r} must be an object")
            s = Singleton.model_validate({"key": singleton.get("key") or None, "mode": singleton.get("mode")})
            out["singleton"] = {"key": s.key, "mode": s.mode}
        except ValidationError as exc:
            problems.append(_problem("singleton", exc))
        except ValueError as exc:
            problems.append(f"singleton: {exc}")
    return out
