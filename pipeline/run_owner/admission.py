"""Rate limit and idempotency: the run owner drops a start command's event before any run exists.

Why here: the owner already owns a per-partition state store, transactions per batch and the order of the
commands of one key (the matcher sends every start of a function with these options to the partition of its
flow key: :meth:`pipeline.sdk.function.Function.owner_key`). So one consumer decides for one (function, key),
with no lock and no second system.

Each option is Inngest's GCRA (:mod:`.gcra`) over the event's **broker receive time** (the start command's
``received_at``), so a replay of the same commands decides the same way:

* ``rate_limit``: ``limit`` per ``period`` with a burst of ``limit // 10``; a key that evaluates to ``false``
  exempts the event;
* ``idempotency``: one run per key value per window (``PIPELINE_IDEMPOTENCY_WINDOW_MS``, 24 h), i.e. GCRA with
  limit 1 and no burst.

An event is admitted only if every option admits it; only then do the states move on (a duplicate that
idempotency drops uses no rate-limit slot). The new states go to the ``rate-limits`` changelog in the
transaction of the command's offset, so a SIGKILL after an admit cannot admit more inside the period. A dropped
event is counted (``pipeline_flow_dropped_events_total``), recorded on ``dropped-events`` for the API, and,
when it was a ``step.invoke``'s ``function.invoked``, answered with a failed ``function.finished`` so the caller's
invoke fails instead of waiting for its timeout (as Inngest's invoke-fail handler does). A key that fails to
evaluate raises: the command is dead-lettered with the CEL error. A replayed run (``pipeline replay runs``) is
an operator's decision and passes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from ..config import Settings
from ..kafka import metrics
from ..kafka import topics as t
from ..kafka.emitter import Emitter
from ..kafka.store import Store
from ..kafka.tables import StoredTables
from ..protocol.drops import IDEMPOTENCY, RATE_LIMIT, dropped_event, flow_limit, key_json, limit_key
from ..protocol.records import FlowLimit
from ..protocol.sysevents import invoke_dropped
from ..sdk.function import Function
from ..serde import DROPPED_EVENT, EVENT, FLOW_LIMIT, Serde
from .gcra import admit
from .limits import LimitTable
from .undo import UndoLog

log = logging.getLogger("pipeline.run-owner")

SWEEP_EVERY_MS = 60_000
# An expired entry is kept this much longer (wall clock) before it is tombstoned: an event received before the
# entry expired but still on its way through a lagging matcher meets it. Only a cleanup: an expired entry admits
# as if absent.
SWEEP_GRACE_MS = 3_600_000
_Check = tuple[str, str | None, int, int, int]  # (option, key JSON, limit, period ms, burst)


class Admission:
    """The rate-limit and idempotency decisions of one run owner, over its partitions' :class:`LimitTable`."""

    def __init__(self, settings: Settings, serde: Serde, commands_topic: str, undo: UndoLog) -> None:
        self.serde = serde
        self.undo = undo
        self.window_ms = settings.idempotency_window_ms
        self.limits_topic = settings.topic(t.RATE_LIMITS)
        self.dropped_topic = settings.topic(t.DROPPED_EVENTS)
        self.system_topic = settings.topic(t.SYSTEM_EVENTS)
        self.tables: StoredTables[LimitTable] = StoredTables(
            commands_topic, self._new_table, changelog=self.limits_topic, label="run-owner rate limits")
        self._next_sweep = 0
        self.dropped = 0  # events dropped by this process (tests read it as a marker)

    def _new_table(self, store: Store) -> LimitTable:
        return LimitTable(store, self.serde)

    def on_start(self, command: dict[str, Any], fn: Function, event: dict[str, Any], p: int, out: Emitter,
                 now: int) -> bool:
        """Decide a start command: True starts the run; False: the event was dropped (and recorded)."""
        if (fn.rate_limit is None and fn.idempotency is None) or command.get("source_id"):
            return True
        received = command["received_at"] or now
        table = self.tables[p]
        moved: list[tuple[str, dict[str, Any] | None, FlowLimit]] = []
        for option, key, limit, period, burst in self._checks(fn, event):
            record_key = limit_key(fn.id, option, key)
            state = table.get(record_key)
            tat = admit(None if state is None else state["tat"], received, period, limit, burst)
            if tat is None:
                self._drop(command, fn, event, option, key, received, out, now)
                return False
            moved.append((record_key, state, flow_limit(fn.id, option, key, tat)))
        for record_key, state, record in moved:
            payload = self.serde.encode(FLOW_LIMIT, record)
            self.undo.add(table.put_raw, record_key, table.raw(record_key))
            table.put(record_key, payload, record["expires_at"], state)
            out.send(self.limits_topic, record_key, None, payload, partition=p)
        return True

    def _checks(self, fn: Function, event: dict[str, Any]) -> Iterator[_Check]:
        """The limits an event of ``fn`` must pass: idempotency first (a duplicate is dropped as one)."""
        activation = {"event": event}
        if fn.idempotency is not None:
            yield IDEMPOTENCY, key_json(fn.idempotency.checked_value(activation)), 1, self.window_ms, 0
        rl = fn.rate_limit
        if rl is not None:
            if rl.key is None:
                yield RATE_LIMIT, None, rl.limit, rl.period_ms, rl.burst
                return
            value = rl.key.checked_value(activation)
            if value is not False:  # as in Inngest: a key that evaluates to false is not rate limited
                yield RATE_LIMIT, key_json(value), rl.limit, rl.period_ms, rl.burst

    def _drop(self, command: dict[str, Any], fn: Function, event: dict[str, Any], reason: str, key: str | None,
              received: int, out: Emitter, now: int) -> None:
        metrics.FLOW_DROPPED.labels(fn.id, reason).inc()
        self.dropped += 1
        out.send(self.dropped_topic, fn.id, DROPPED_EVENT,
                 dropped_event(fn.id, command["run_id"], event, command["event"], reason, key, received, now))
        what = "rate limited" if reason == RATE_LIMIT else "skipped by its idempotency key"
        failed = invoke_dropped(command["event"], fn.id, command["run_id"], received,
                                f"invoked function is {what}", now)
        if failed is not None:
            out.send(self.system_topic, failed["id"], EVENT, failed)
        log.info("event dropped", extra={"function_id": fn.id, "event_id": event.get("id"), "reason": reason,
                                         "key": key})

    def tick(self, out: Emitter, now: int) -> None:
        """Once a minute, tombstone the entries that expired (plus the grace) so the topic and stores stay small."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_EVERY_MS
        for p, table in self.tables.items():
            for record_key in table.expired(now - SWEEP_GRACE_MS):
                self.undo.add(table.put_raw, record_key, table.raw(record_key))
                table.put_raw(record_key, None)
                out.send(self.limits_topic, record_key, None, None, partition=p)
