"""The run owner's timer tick: wake sleeping runs, resume retries, time runs out, release runs at the
watermark gate, apply new bulk cancellations and fire cron ticks.

A part of :class:`pipeline.run_owner.owner.RunOwner` (it holds one), kept in a module of its own so the owner's
per-record path reads on its own. It owns the gate's prober and the bulk-rule sweep; the table, timers and
effects are the owner's.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..kafka import metrics
from ..kafka.emitter import Emitter
from . import state as st
from .bulk import BulkRule
from .gate import GateProber
from .pending import GATE_PREFIX

if TYPE_CHECKING:
    from .owner import RunOwner

log = logging.getLogger("pipeline.run-owner")


class Ticker:
    """What the owner does on the loop's tick, without input."""

    def __init__(self, owner: RunOwner) -> None:
        self.owner = owner
        self.prober: GateProber | None = None  # started when a run first waits at the gate
        self.sweep_bulk = False  # re-apply every bulk rule at the next tick (after a restore, or a failed tick)

    def tick(self, out: Emitter, now: int) -> None:
        """Wake sleeping runs, resume retries, time out runs, release gated runs, apply new bulk cancellations."""
        owner = self.owner
        tables = owner.tables
        if owner.timers.needs_extending(now):
            owner.timers.extend(now, lambda start, stop: [(at, run_id, p) for p, table in tables.items()
                                                          for at, run_id in table.timers(start, stop)])
        for _, run_id, p in owner.timers.due(now):
            state = owner.run(p, run_id)
            if state is None or st.is_ended(state):
                continue
            fn = owner.registry.by_id.get(state["function_id"])
            deadline = state.get("deadline_at")
            if deadline is not None and deadline <= now:
                which = "start" if state["status"] == "Queued" else "finish"
                owner.apply(st.cancel(state, "timeout", which, now), fn, p, out, now)
                continue
            wake_at = state.get("wake_at")
            if wake_at is not None and wake_at <= now:
                owner.apply(st.wake(state, now), fn, p, out, now)
        owner.pending.tick(out, now)  # due debounces and batches go to the gate
        self._release_gated(out, now)
        self._poll_bulk(out, now)
        owner.crons.fire(out, now, owner.undo)

    def close(self) -> None:
        if self.prober is not None:
            self.prober.stop()

    def _release_gated(self, out: Emitter, now: int) -> None:
        owner = self.owner
        gates = owner.gates
        if not len(gates):
            if self.prober is not None:
                self.prober.wanted = False
            metrics.RUNS_WAITING.labels(st.GATE).set(0)
            return
        if self.prober is None:
            self.prober = GateProber(owner.servers, owner.settings)
            self.prober.start()
        self.prober.wanted = True
        gates.take_rounds(self.prober.rounds)
        positions = owner.loop.processed_positions(owner.commands_topic, list(gates.waiting)) \
            if owner.loop is not None else {}
        for p, run_id, timed_out in gates.due(positions, now):
            if run_id.startswith(GATE_PREFIX):  # a pending debounce or batch at its deadline
                owner.pending.release(p, run_id, out, now)
                continue
            state = owner.run(p, run_id)
            if state is None or st.is_ended(state) or state.get("held") != st.GATE:
                continue
            if timed_out:
                metrics.GATE_TIMEOUTS.inc()
                log.warning("cancel path not proven past the run's point in time; going on",
                            extra={"run_id": run_id, "waited_ms": now - state["ready_at"],
                                   "cancel_path_lag_ms": now - (self.prober.last_t0 or now)})
            owner.advance(state, owner.function(state["function_id"]), p, out, now)
        metrics.RUNS_WAITING.labels(st.GATE).set(len(gates))

    def _poll_bulk(self, out: Emitter, now: int) -> None:
        owner = self.owner
        rules: list[BulkRule] = list(owner.bulk.rules.values()) if self.sweep_bulk else []
        self.sweep_bulk = False
        rules.extend(owner.bulk.poll())
        if rules:  # the tick fails after this: the rules are kept, so sweep them all again at the next one
            owner.undo.add(setattr, self, "sweep_bulk", True)
        for rule in rules:
            if rule.stopped:
                continue
            for p, table in owner.tables.items():
                for state in table.values():  # read from the store as it goes, never all at once
                    if rule.hits(state):
                        owner.apply(st.cancel(state, "bulk", rule.id, now),
                                    owner.registry.by_id.get(state["function_id"]), p, out, now)
            owner.pending.bulk_cancel(rule.hits, out)  # pending debounces and batches it covers
