"""A function's flow-control settings as ``/v1/functions`` shows them (``flow``): one entry per option set, in
Inngest's words, so the dev UI's function page lists what drops, delays, gates and orders the function's runs."""

from __future__ import annotations

from typing import Any

from ..sdk.function import Function


def flow_settings(fn: Function) -> dict[str, dict[str, Any]]:
    """Option name -> its settings, for the options ``fn`` has (none: empty)."""
    out: dict[str, dict[str, Any]] = {}
    if fn.rate_limit is not None:
        rl = fn.rate_limit
        out["rate_limit"] = {"limit": rl.limit, "period_ms": rl.period_ms, "burst": rl.burst,
                             "key": rl.key.source if rl.key else None}
    if fn.idempotency is not None:
        out["idempotency"] = {"key": fn.idempotency.source}
    if fn.debounce is not None:
        d = fn.debounce
        out["debounce"] = {"period_ms": d.period_ms, "timeout_ms": d.timeout_ms,
                           "key": d.key.source if d.key else None}
    if fn.batch is not None:
        b = fn.batch
        out["batch_events"] = {"max_size": b.max_size, "timeout_ms": b.timeout_ms,
                               "key": b.key.source if b.key else None, "if": b.if_expr.source if b.if_expr else None}
    if fn.throttle is not None:
        t = fn.throttle
        out["throttle"] = {"limit": t.limit, "period_ms": t.period_ms, "burst": t.burst, "key": t.key_source,
                           "strict": t.strict}
    if fn.priority is not None:
        out["priority"] = {"run": fn.priority.run.source}
    if fn.singleton is not None:
        out["singleton"] = {"mode": fn.singleton.mode, "key": fn.singleton.key_source}
    return out
