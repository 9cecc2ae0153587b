"""The run owner (the ``executor`` service): the only writer of run state, and a state machine only.

It consumes ``run-commands`` (start and cancel commands, and the workers' step outcomes, keyed
by run id or sent to the run's owner partition) and keeps a table of its partitions' runs,
rebuilt from the compacted ``runs`` topic (partition p of runs holds the runs of partition p of
run-commands) on every assignment. Everything one input causes - the new state, the next
invocation for a worker, system events - commits in one Kafka transaction with its offset.

It never runs user code: an invocation goes to the ``invocations`` topic, a worker runs it and
sends the outcome back here. So the loop is always free for cancels, wake-ups, timeouts and bulk
cancellations, whatever the workers are doing. A cancel applies at once, even with a step in
flight; the step's late outcome is stale and starts nothing.

Between outcome and next invocation a run may wait: for a concurrency slot (:mod:`.slots`) and,
when its function has cancel rules, for the cancel path to pass the point it reached
(:mod:`.gate`). Sleeps and retry backoffs wait on an in-memory timer heap of the timers due soon, loaded from the
run table's timer index.

The loop keeps the per-partition tables: the runs, in a state store restored from the ``runs`` changelog's tail
(:mod:`.table`; memory stays bounded whatever the number of runs), and the slot counts, derived in
:meth:`RunOwner.assigned` from the few runs the table indexes as holding or waiting for slots.
A record that fails is undone whole: its table changes (:mod:`.writes`) and its
slots, timers, gate waits and cron clocks (:mod:`.undo`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from confluent_kafka import Message, TopicPartition
from confluent_kafka.admin import AdminClient

from ..apps.applied import FunctionsApplied
from ..config import Settings
from ..kafka import metrics
from ..kafka import topics as t
from ..kafka.client import admin_config, bootstrap
from ..kafka.emitter import Emitter, OutputTooLarge
from ..kafka.processor import Processor, override
from ..kafka.store import Store
from ..kafka.tables import PartitionTables, StoredTables
from ..protocol.errors import error_payload
from ..sdk.app import Registry
from ..sdk.function import Function
from ..serde import EVENT, RUN_COMMAND, STEP_OUTCOME, Serde
from ..serde.models import event_dict_to_record
from . import advancing, singleton
from . import state as st
from .admission import Admission
from .bulk import BulkRules
from .crons import CronTicks
from .gate import GateBook
from .listening import Listening
from .pending import PendingRuns
from .rearm import rearm
from .slots import Slots
from .table import RunTable
from .throttle import Throttles
from .ticking import Ticker
from .undo import Timers, UndoLog
from .writes import StateWrites

if TYPE_CHECKING:
    from ..kafka.loop import ServiceLoop

log = logging.getLogger("pipeline.run-owner")


TIMER_SOON_MS = 100  # the loop's poll timeout: a timer due sooner makes the loop tick every few ms until it fires


class UnknownFunction(LookupError):
    """A command names a function this deployment does not serve (dead-lettered with that reason)."""


def _now() -> int:
    return time.time_ns() // 1_000_000


class RunOwner(Processor):
    """The run owner processor for :class:`pipeline.kafka.loop.ServiceLoop`."""

    name = "run-owner"

    def __init__(self, registry: Registry, settings: Settings, serde: Serde | None = None, *,
                 retry_backoff_ms: int = 1000) -> None:
        self.registry = registry
        self.settings = settings
        self.serde = serde or Serde()
        self.retry_backoff_ms = retry_backoff_ms
        self.commands_topic = settings.topic(t.RUN_COMMANDS)
        self.runs_topic = settings.topic(t.RUNS)
        self.invocations_topic = settings.topic(t.INVOCATIONS)
        self.system_topic = settings.topic(t.SYSTEM_EVENTS)
        self.events_topic = settings.topic(t.EVENTS)
        self.index_topic = settings.topic(t.CANCEL_INDEX)
        # Its listeners and tombstones in cancel-index, and the events it sends (step.send_event, invoke, cron
        # ticks) to ``events``, go out at the commit: early in a transaction (which may span several batches)
        # they would hide the matcher's at-once cancel signals, or the cancel events other producers write to
        # ``events``, in that partition until the commit (see committing.py). Nobody reads them sooner anyway.
        self.defer_output = frozenset({self.index_topic, self.events_topic})
        self.servers = bootstrap(settings)
        self.undo = UndoLog()  # what the current record changed beyond the table (slots, timers, gates, clocks)
        # the loop keeps these per assigned partition of run-commands: the runs, in a state store restored from
        # ``runs``, and the slot counts and queues, derived from them (assigned)
        self.tables: StoredTables[RunTable] = StoredTables(
            self.commands_topic, self._new_table, changelog=self.runs_topic, label="run-owner runs")
        self.slots: PartitionTables[Slots] = PartitionTables(self.commands_topic, lambda: Slots(self.undo))
        self.throttles = Throttles(self, settings.topic(t.THROTTLES))
        self.timers = Timers(self.undo)
        self.admission = Admission(settings, self.serde, self.commands_topic, self.undo)  # rate limit, idempotency
        self.writes = StateWrites(self.runs_topic, settings.max_output_bytes)
        self._decoded: dict[tuple[int, int], tuple[str, dict[str, Any]]] = {}  # by urgent(), for process()
        self.bulk = BulkRules(self.servers, settings.topic(t.CANCELLATIONS), self.serde)
        self.gates = GateBook(settings.gate_max_wait_ms, self.undo)
        self.loop: ServiceLoop | None = None
        self.ticker = Ticker(self)
        self.fn_logger = logging.getLogger("pipeline.function")

        def admin() -> AdminClient:  # only when first needed
            return AdminClient(admin_config(self.servers))

        self.listening = Listening(registry, self.index_topic, self.events_topic,
                                   lambda: t.partition_count(admin(), self.index_topic), retry_backoff_ms)
        self.applied = FunctionsApplied(registry)  # the proof that syncs are in effect (pipeline.apps.applied)
        self.crons = CronTicks(registry, self.events_topic,
                               lambda: t.partition_count(admin(), self.commands_topic))
        self.pending = PendingRuns(self)  # debounce and batch_events (pending.py)

    @override
    def topics(self) -> list[str]:
        return [self.commands_topic]

    @property
    @override
    def waiting(self) -> bool:
        """Runs wait at the gate, or a timer (a throttle release, a wake-up) or a pending debounce or batch is due
        within the loop's poll timeout: the loop should tick often, so the tick that releases them is not up to a
        poll timeout late."""
        if len(self.gates) > 0:
            return True
        now = _now()
        due = self.timers.next_at()
        return (due is not None and due - now <= TIMER_SOON_MS) or self.pending.due_soon(now)

    @override
    def bind(self, loop: ServiceLoop) -> None:
        """The loop that runs us: the gate reads the consumer's positions (on the loop's own thread). Publishes how
        far this owner has applied the functions topic (a sync answers once every owner has it)."""
        self.loop = loop
        self.applied.bind(self.settings, loop.group_id)

    # -- state rebuild -------------------------------------------------------------------------------------

    def _new_table(self, store: Store) -> RunTable:
        return RunTable(store, self.serde)

    @override
    def partition_tables(self) -> Sequence[PartitionTables[Any]]:
        return [self.tables, self.slots, self.admission.tables, self.throttles.states, self.throttles.queues,
                *self.pending.tables.values()]

    @override
    def assigned(self, partitions: list[TopicPartition]) -> None:
        """The run tables of the assigned partitions are restored: re-arm their timers, slots and gates."""
        parts = self.tables.partitions(partitions)
        self.applied.assigned()  # joined after a writer checked the group: catch up before their first record
        self.writes.forget(parts)
        self._decoded.clear()
        self.undo.begin()  # nothing before a rebalance is undone after it
        self.timers.drop(parts)
        now = _now()
        for p in parts:
            rearm(self, p, now)
        self.undo.begin()
        self.bulk.load()
        self.ticker.sweep_bulk = True  # re-apply every rule to the rebuilt table at the next tick (idempotent)
        self.crons.assigned(parts, _now())
        self.pending.assigned(parts)

    @override
    def revoked(self, partitions: list[TopicPartition]) -> None:
        """The partitions' tables and slots are dropped already: drop their timers, gate waits, writes, clocks."""
        parts = self.tables.partitions(partitions)
        self.writes.forget(parts)
        self._decoded.clear()
        self.undo.begin()
        for p in parts:
            self.gates.drop_partition(p)
            self.crons.revoked(p)
        self.pending.revoked(parts)
        self.timers.keep(self.tables.__contains__)

    # -- commands and outcomes -----------------------------------------------------------------------------

    @override
    def urgent(self, msg: Message) -> bool:
        """A cancel command for a run this owner has and that has not ended: applied ahead of the backlog (a
        burst of starts and outcomes), so a cancel never waits for an ingest (pipeline/kafka/lookahead.py)."""
        value, p, offset = msg.value(), msg.partition(), msg.offset()
        if value is None or p is None or offset is None:
            return False  # a tombstone: process() dead-letters it
        decoded = self.serde.decode(value)
        self._decoded[(p, offset)] = decoded
        name, record = decoded
        if name != RUN_COMMAND or record["kind"] != "cancel":
            return False
        state = self.run(p, record["run_id"])
        return state is not None and not st.is_ended(state)

    @override
    def process(self, msg: Message, out: Emitter) -> None:
        self.applied.ready()
        self.writes.begin()
        self.undo.begin()
        p, offset = msg.partition(), msg.offset()
        if p is None or offset is None:
            raise ValueError("not a consumed record")
        decoded = self._decoded.pop((p, offset), None)
        if decoded is None:
            value = msg.value()
            if value is None:
                raise ValueError(f"empty record (tombstone) on {self.commands_topic}")
            decoded = self.serde.decode(value)
        name, record = decoded
        table = self.tables[p]
        now = _now()
        if name == STEP_OUTCOME:
            self._outcome(record, table.get(record["run_id"]), p, out, now)
            return
        if name != RUN_COMMAND:
            raise ValueError(f"unexpected {name} record on {self.commands_topic}")
        kind = record["kind"]
        state = table.get(record["run_id"])
        if kind == "start":
            if state is not None:
                return  # a duplicate or replayed event: the run exists already
            fn = self.function(record["function_id"])
            event = json.loads(record["event"])
            if not self.admission.on_start(record, fn, event, p, out, now):  # dropped: rate limit, idempotency
                if fn.cancels:  # the matcher registered the run's cancel listeners with its start: forget them
                    self.listening.unlisten_cancels(fn, {"event": record["event"], "run_id": record["run_id"],
                                                         "received_at": record["received_at"] or now,
                                                         "queued_at": now}, out)
                return
            if not self.pending.on_start(record, fn, p, out, now):  # debounce, batch_events: a pending record
                self.start_run(record, fn, p, out, now)
        elif kind == "cancel":
            if state is None:
                if not self.pending.cancel(record["run_id"], p, out):
                    log.info("cancel for an unknown run ignored", extra={"run_id": record["run_id"]})
                return
            self.apply(st.cancel(state, record["reason"] or "api", record["source_id"], now),
                        self.registry.by_id.get(state["function_id"]), p, out, now)
        elif kind == "resume":
            if state is None:
                return
            tr = st.resume(state, record["step_id"], record["event"] or "null", now)
            if tr.state is None:
                return  # stale: the run no longer waits on that step
            served = self.registry.by_id.get(state["function_id"])
            if state.get("held") == st.GATE:  # timed out and holding its slots at the gate: give them back first
                self._release_slots(state, served, p, out, now)
            self.apply(tr, served, p, out, now)
        # "execute" commands (the run queue of earlier versions) are obsolete: invocations replaced them

    def start_run(self, record: dict[str, Any], fn: Function, p: int, out: Emitter, now: int, *,
                  batch: str | None = None) -> None:
        """Schedule the run of a start command (or of a pending debounce or batch, whose run may exist: a replay)."""
        if self.run(p, record["run_id"]) is not None:
            return
        event = json.loads(record["event"])
        timeouts = fn.timeouts
        tr = st.start(record, event["id"], now, start_timeout_ms=timeouts.start_ms() if timeouts else None,
                      slot_keys=fn.slot_keys(event), batch=batch,
                      singleton_key=fn.singleton.key_of(fn.id, event) if fn.singleton else None)
        assert tr.state is not None
        for rule in self.bulk.rules.values():
            if rule.hits(tr.state):
                self.apply(tr, fn, p, out, now, advance=False)
                self.apply(st.cancel(tr.state, "bulk", rule.id, now), fn, p, out, now)
                return
        if singleton.on_start(self, tr.state, fn, p, out, now):
            return  # skipped: another run of its singleton key is active
        self.apply(tr, fn, p, out, now)

    def _outcome(self, outcome: dict[str, Any], state: dict[str, Any] | None, p: int, out: Emitter, now: int) -> None:
        if state is None or not st.is_current(state, outcome):
            metrics.STALE_OUTCOMES.inc()
            return
        fn = self.function(state["function_id"])
        self._release_slots(state, fn, p, out, now)
        tr = st.apply_outcome(state, outcome, now, retries=fn.retries, backoff_ms=self.retry_backoff_ms)
        if outcome["kind"] == "wait" and tr.state is not None and tr.state["status"] == "Waiting":
            tr = self.listening.listen(tr, fn, p, out, now)
        try:
            self.apply(tr, fn, p, out, now)
        except OutputTooLarge as exc:
            # The new state (e.g. a huge step output) cannot be stored: fail the run rather than wedge it.
            error = error_payload(str(exc), "OutputTooLarge")
            failed = st.failed_attempt(st._bump(state, inflight_at=None), error, fn.retries, now,
                                       backoff_ms=self.retry_backoff_ms, retriable=False)
            self.apply(failed, fn, p, out, now)

    # -- moving a ready run on: slots, gate, invocation ----------------------------------------------------

    def advance(self, state: dict[str, Any], fn: Function, p: int, out: Emitter, now: int) -> None:
        """A run waits at its point (``ready_at``): see :func:`.advancing.advance`."""
        advancing.advance(self, state, fn, p, out, now)

    def _release_slots(self, state: dict[str, Any], fn: Function | None, p: int, out: Emitter, now: int) -> None:
        advancing.release_slots(self, state, fn, p, out, now)

    # -- effects -------------------------------------------------------------------------------------------

    def _write(self, state: dict[str, Any], p: int, out: Emitter) -> None:
        self.writes.write(self.tables, state, p, out)

    @override
    def tick(self, out: Emitter, now: int) -> None:
        """Wake sleeping runs, resume retries, time out runs, release gated runs, apply new bulk cancellations
        (:mod:`.ticking`); undone whole if it fails."""
        self.writes.begin()
        self.undo.begin()
        self.ticker.tick(out, now)
        self.admission.tick(out, now)

    @override
    def end_batch(self, out: Emitter) -> None:
        """The loop's end of a batch: each run changed in it is written once, in the batch's transaction."""
        self.writes.flush(out, self.tables)
        self.pending.flush(out)

    @override
    def discard(self) -> None:
        """The record being processed (or the tick) failed and its output is dropped: undo everything it changed,
        its table changes and its slots, timers, gate waits and cron clocks."""
        self.writes.discard(self.tables)
        self.undo.rollback()

    def apply(self, tr: st.Transition, fn: Function | None, p: int, out: Emitter, now: int, *,
               advance: bool = True) -> None:
        """Turn a transition into output records (all in the current transaction) and update the table."""
        new = tr.state
        if new is None:
            return
        old = self.run(p, new["run_id"])
        self._write(new, p, out)
        for ev in tr.user_events:
            out.send(self.events_topic, ev["id"], EVENT, event_dict_to_record(ev))
        for record in tr.system_events:
            out.send(self.system_topic, record["id"], EVENT, record)
        if tr.ended:
            self.fn_logger.info("run ended", extra={"run_id": new["run_id"], "function_id": new["function_id"],
                                                    "status": new["status"], "reason": new.get("cancel_reason")})
            if old is not None:
                self._release_slots(old, fn, p, out, now)
                if old.get("held") == st.CONCURRENCY:
                    self.slots.get(p, Slots()).forget(new["run_id"])
                self.throttles.forget(old, fn, p, out, now)
            if fn is not None and fn.cancels:
                self.listening.unlisten_cancels(fn, new, out)
            if old is not None and old["status"] == "Waiting":
                self.listening.unlisten_wait(old, out)
            return
        self.arm(new, p)
        if tr.ready and advance and fn is not None:
            self.advance(new, fn, p, out, now)

    def arm(self, state: dict[str, Any], p: int) -> None:
        at = st.next_timer(state)
        if at is not None:
            self.timers.arm(at, state["run_id"], p)

    def run(self, p: int, run_id: str) -> dict[str, Any] | None:
        """A run's state, if partition p is ours and has it."""
        table = self.tables.get(p)
        return None if table is None else table.get(run_id)

    def function(self, function_id: str) -> Function:
        fn = self.registry.by_id.get(function_id)
        if fn is None:
            raise UnknownFunction(f"function {function_id!r} is not served by this deployment")
        return fn

    @override
    def close(self) -> None:
        self.bulk.close()
        self.ticker.close()

