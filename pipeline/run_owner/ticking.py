"""The run owner's timer tick: wake sleeping runs, resume retries, time runs out, release runs at the
watermark gate, apply new bulk cancellations and fire cron ticks.

A mixin of :class:`pipeline.run_owner.owner.RunOwner` (its table, timers and effects are the owner's), kept in a
module of its own so the owner's per-record path reads on its own.
"""

from __future__ import annotations

import heapq
import logging
from typing import TYPE_CHECKING, Any

from ..kafka import metrics
from ..kafka.emitter import Emitter
from . import state as st
from .bulk import BulkRule
from .gate import GateProber

log = logging.getLogger("pipeline.run-owner")


class Ticking:
    """What the owner does on the loop's tick, without input."""

    # provided by RunOwner
    tables: dict[int, dict[str, dict[str, Any]]]
    timers: list[tuple[int, str, int]]
    registry: Any
    settings: Any
    servers: str
    commands_topic: str
    gates: Any
    prober: GateProber | None
    loop: Any
    bulk: Any
    crons: Any
    writes: Any
    _sweep_bulk: bool

    if TYPE_CHECKING:  # RunOwner's
        def _apply(self, tr: st.Transition, fn: Any, p: int, out: Emitter, now: int, *,
                   advance: bool = True) -> None: ...

        def _advance(self, state: dict[str, Any], fn: Any, p: int, out: Emitter, now: int) -> None: ...

        def _function(self, function_id: str) -> Any: ...

    def tick(self, out: Emitter, now: int) -> None:
        """Wake sleeping runs, resume retries, time out runs, release gated runs, apply new bulk cancellations."""
        self.writes.begin()
        timers = self.timers
        while timers and timers[0][0] <= now:
            _, run_id, p = heapq.heappop(timers)
            state = self.tables.get(p, {}).get(run_id)
            if state is None or st.is_ended(state):
                continue
            fn = self.registry.by_id.get(state["function_id"])
            deadline = state.get("deadline_at")
            if deadline is not None and deadline <= now:
                which = "start" if state["status"] == "Queued" else "finish"
                self._apply(st.cancel(state, "timeout", which, now), fn, p, out, now)
                continue
            wake_at = state.get("wake_at")
            if wake_at is not None and wake_at <= now:
                self._apply(st.wake(state, now), fn, p, out, now)
        self._release_gated(out, now)
        self._poll_bulk(out, now)
        self.crons.fire(out, now)

    def _release_gated(self, out: Emitter, now: int) -> None:
        if not len(self.gates):
            if self.prober is not None:
                self.prober.wanted = False
            metrics.RUNS_WAITING.labels(st.GATE).set(0)
            return
        if self.prober is None:
            self.prober = GateProber(self.servers, self.settings)
            self.prober.start()
        self.prober.wanted = True
        self.gates.take_rounds(self.prober.rounds)
        positions = self.loop.processed_positions(self.commands_topic, list(self.gates.waiting)) \
            if self.loop is not None else {}
        for p, run_id, timed_out in self.gates.due(positions, now):
            state = self.tables.get(p, {}).get(run_id)
            if state is None or st.is_ended(state) or state.get("held") != st.GATE:
                continue
            if timed_out:
                metrics.GATE_TIMEOUTS.inc()
                log.warning("cancel path not proven past the run's point in time; going on",
                            extra={"run_id": run_id, "waited_ms": now - state["ready_at"],
                                   "cancel_path_lag_ms": now - (self.prober.last_t0 or now)})
            self._advance(state, self._function(state["function_id"]), p, out, now)
        metrics.RUNS_WAITING.labels(st.GATE).set(len(self.gates))

    def _poll_bulk(self, out: Emitter, now: int) -> None:
        rules: list[BulkRule] = list(self.bulk.rules.values()) if self._sweep_bulk else []
        self._sweep_bulk = False
        rules.extend(self.bulk.poll())
        for rule in rules:
            if rule.stopped:
                continue
            for p, table in self.tables.items():
                for state in list(table.values()):
                    if rule.hits(state):
                        self._apply(st.cancel(state, "bulk", rule.id, now), self.registry.by_id.get(state["function_id"]),
                                    p, out, now)
