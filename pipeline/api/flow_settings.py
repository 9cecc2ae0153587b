"""A function's flow-control settings as ``/v1/functions`` shows them (``flow``): one entry per option set, in
Inngest's words, so the dev UI's function page lists what gates and orders the function's runs."""

from __future__ import annotations

from typing import Any

from ..sdk.function import Function


def flow_start(fn: Function) -> dict[str, Any]:
    """``throttle``, ``priority`` and ``singleton`` of ``fn`` (only those it has)."""
    out: dict[str, Any] = {}
    if fn.throttle is not None:
        t = fn.throttle
        out["throttle"] = {"limit": t.limit, "period_ms": t.period_ms, "burst": t.burst, "key": t.key_source,
                           "strict": t.strict}
    if fn.priority is not None:
        out["priority"] = {"run": fn.priority.run.source}
    if fn.singleton is not None:
        out["singleton"] = {"mode": fn.singleton.mode, "key": fn.singleton.key_source}
    return out

