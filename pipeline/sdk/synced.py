"""A function synced from an app over HTTP, compiled from its ``functions`` record into the same
:class:`~pipeline.sdk.function.Function` the matcher, run owner and API use for ``--app`` functions.

Only the worker tells them apart (it calls ``url`` instead of a handler). Two things differ by nature:

* its handler lives in another process, so the placeholder here raises if anything calls it;
* its ``wait_for_event`` names are not in any source to read: they are learned when its runs report a
  ``WaitForEvent`` (the record's ``waits``), and its waits join by event name (the ``if`` is evaluated on each
  event of that name), so :meth:`SyncedFunction.wait_paths` accepts any event.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..protocol.functions import learned_waits
from ..protocol.records import FunctionDef
from .cron import CronSchedule
from .definitions import (
    Batch,
    Cancel,
    Concurrency,
    Debounce,
    Priority,
    RateLimit,
    Singleton,
    Throttle,
    Timeouts,
    TriggerEvent,
)
from .flow import (
    compile_idempotency,
    compile_priority,
    compile_rate_limit,
    compile_singleton,
    compile_throttle,
)
from .function import (
    CompiledWait,
    Function,
    _compile_cancel,
    _compile_concurrency,
    _compile_trigger,
)
from .pending import compile_batch, compile_debounce


def _served_elsewhere(*_: Any) -> Any:
    raise RuntimeError("this function is served by an app over HTTP; the HTTP worker calls it")


@dataclass
class SyncedFunction(Function):
    """A function an app serves over HTTP at ``url`` (Inngest's SDK protocol)."""

    url: str = ""
    app_url: str = ""
    sdk: str = ""
    synced_at: int = 0
    record: FunctionDef | None = None

    def wait_paths(self, event: str) -> tuple[str | None, ...]:
        """Any event may be awaited (names are learned at run time); waits join by name."""
        return (None,)


def synced_function(record: FunctionDef) -> SyncedFunction:
    """Compile a ``functions`` record. Raises :class:`~pipeline.sdk.definitions.DefinitionError` (bad CEL)."""
    spec = json.loads(record["definition"])
    app_id = record["app_id"]
    fn_id = record["id"][len(app_id) + 1:]
    triggers = tuple(_compile_trigger(record["id"], TriggerEvent(event=t["event"], expression=t.get("expression")))
                     for t in spec.get("triggers", []) if t.get("event"))
    crons = tuple(CronSchedule(t["cron"]) for t in spec.get("triggers", []) if t.get("cron"))
    cancels = tuple(_compile_cancel(record["id"], i, Cancel(event=c["event"], if_exp=c.get("if"),
                                                            timeout=c.get("timeout_ms")))
                    for i, c in enumerate(spec.get("cancel", [])))
    limits = tuple(_compile_concurrency(record["id"], i, Concurrency(limit=c["limit"], key=c.get("key")))
                   for i, c in enumerate(spec.get("concurrency", [])))
    t = spec.get("timeouts") or {}
    timeouts = Timeouts(start=t.get("start_ms"), finish=t.get("finish_ms")) \
        if t.get("start_ms") is not None or t.get("finish_ms") is not None else None
    waits = tuple(CompiledWait(w["event"], None) for w in learned_waits(record))
    limit = spec.get("rate_limit")
    rate_limit = compile_rate_limit(record["id"], RateLimit(limit=limit["limit"], period=limit["period_ms"],
                                                             key=limit.get("key")) if limit else None)
    th, pr, si = spec.get("throttle"), spec.get("priority"), spec.get("singleton")
    throttle = compile_throttle(record["id"], Throttle(limit=th["limit"], period=th["period_ms"], key=th.get("key"),
                                                        burst=th.get("burst") or 1, strict=th.get("strict", False))
                                 if th else None)
    priority = compile_priority(record["id"], Priority(run=pr["run"]) if pr else None)
    singleton = compile_singleton(record["id"], Singleton(key=si.get("key"), mode=si["mode"]) if si else None)
    d, b = spec.get("debounce"), spec.get("batch")
    debounce = compile_debounce(record["id"], Debounce(period=d["period_ms"], timeout=d.get("timeout_ms"),
                                                       key=d.get("key")) if d else None)
    batch = compile_batch(record["id"], Batch(max_size=b["max_size"], timeout=b["timeout_ms"], key=b.get("key"),
                                              if_exp=b.get("if")) if b else None)
    return SyncedFunction(app_id=app_id, fn_id=fn_id, name=record["name"], handler=_served_elsewhere,
                          triggers=triggers, cancels=cancels, retries=int(spec.get("retries", 4)),
                          timeouts=timeouts, is_async=True, concurrency=limits, waits=waits, crons=crons,
                          rate_limit=rate_limit,
                          idempotency=compile_idempotency(record["id"], spec.get("idempotency")),
                          throttle=throttle, priority=priority, singleton=singleton, debounce=debounce, batch=batch,
                          url=record["url"], app_url=record["app_url"], sdk=record["sdk"],
                          synced_at=record["synced_at"], record=record)
