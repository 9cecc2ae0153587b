"""The run owner (executor): the only writer of run state, one partition of runs at a time.

It consumes ``run-commands`` (start, execute, cancel; keyed by run id) and keeps a table of
its partitions' runs, rebuilt from the compacted ``runs`` topic (partition p of runs holds
the runs of partition p of run-commands) on every assignment. Each command's new state, next
command, system events and consumed offset commit in one Kafka transaction, so a crash can
neither lose nor duplicate a step result or a system event.

Handlers run here, one step per execution (see :mod:`pipeline.sdk.steps`). Because one
partition's commands are processed in order, a cancel that arrives while a step runs is
applied right after that step: the step finishes and no later step starts. Sleeping runs
and retry backoffs wait on an in-memory timer heap (no thread), rebuilt with the table.
Bulk cancellations are read whole from their compacted topic by every owner, which applies
them to its own partitions' runs.
"""

from __future__ import annotations

import heapq
import json
import logging
import time
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition
from confluent_kafka.admin import AdminClient

from ..canceller.keys import listener_record_key, partition_for
from ..canceller.registration import listeners_for
from ..config import Settings
from ..expr import ExprError, compile_expr
from ..kafka import topics as t
from ..kafka.client import admin_config, bootstrap, consumer_config
from ..kafka.loop import Emitter, OutputTooLarge
from ..kafka.restore import restore
from ..kafka import metrics
from ..sdk.app import Registry
from ..sdk.function import Function
from ..serde import BULK_CANCELLATION, EVENT, RUN_COMMAND, RUN_STATE, Serde
from ..serde.models import event_dict_to_record
from . import state as st
from .ids import derived_ulid
from .invoke import invoke

log = logging.getLogger("pipeline.executor")


class UnknownFunction(LookupError):
    """A command names a function this deployment does not serve (dead-lettered with that reason)."""


class BulkRule:
    """A bulk cancellation, compiled: which runs (function, start window, ``if``) it cancels."""

    def __init__(self, record: dict[str, Any]) -> None:
        self.id: str = record["id"]
        fid = record["function_id"]
        app = record["app_id"]
        self.function_id = fid if fid.startswith(f"{app}-") else f"{app}-{fid}"
        self.after: int | None = record.get("started_after")
        self.before: int = record["started_before"]
        self.stopped = record.get("stopped_at") is not None
        self.expr = None
        if record.get("if_exp"):
            try:
                self.expr = compile_expr(record["if_exp"], ("event",))
            except ExprError:
                self.stopped = True  # the API refuses these; a hand-written bad one cancels nothing

    def hits(self, state: dict[str, Any]) -> bool:
        if self.stopped or state["function_id"] != self.function_id or st.is_ended(state):
            return False
        started = state.get("started_at") or state["queued_at"]
        if started > self.before or (self.after is not None and started < self.after):
            return False
        return self.expr is None or self.expr.evaluate({"event": json.loads(state["event"])})


class RunOwner:
    """The executor processor for :class:`pipeline.kafka.loop.ServiceLoop`."""

    name = "executor"

    def __init__(self, registry: Registry, settings: Settings, serde: Serde | None = None, *,
                 retry_backoff_ms: int = 1000) -> None:
        self.registry = registry
        self.settings = settings
        self.serde = serde or Serde()
        self.retry_backoff_ms = retry_backoff_ms
        self.commands_topic = settings.topic(t.RUN_COMMANDS)
        self.runs_topic = settings.topic(t.RUNS)
        self.system_topic = settings.topic(t.SYSTEM_EVENTS)
        self.events_topic = settings.topic(t.EVENTS)
        self.index_topic = settings.topic(t.CANCEL_INDEX)
        self.bulk_topic = settings.topic(t.CANCELLATIONS)
        self.servers = bootstrap(settings)
        self.tables: dict[int, dict[str, dict[str, Any]]] = {}
        self.timers: list[tuple[int, str, int]] = []
        self.bulk: dict[str, BulkRule] = {}
        self._bulk_consumer: Consumer | None = None
        self._index_partitions: int | None = None
        self._sweep_bulk = False
        self.fn_logger = logging.getLogger("pipeline.function")

    def topics(self) -> list[str]:
        return [self.commands_topic]

    # -- state rebuild -------------------------------------------------------------------------------------

    def assigned(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        """Rebuild the run table of each assigned partition from ``runs`` and re-arm timers."""
        parts = [tp.partition for tp in partitions if tp.topic == self.commands_topic]
        for p in parts:
            self.tables[p] = {}

        def load(msg: Message) -> None:
            table = self.tables[msg.partition()]
            if msg.value() is None:
                table.pop(msg.key().decode(), None)
                return
            state = self.serde.decode_as(RUN_STATE, msg.value())
            table[state["run_id"]] = state

        count, seconds = restore(self.servers, self.runs_topic, parts, load, label="executor runs")
        metrics.RESTORE_SECONDS.labels(self.name, self.runs_topic).set(seconds)
        metrics.RESTORE_RECORDS.labels(self.name, self.runs_topic).set(count)
        self.timers = [entry for entry in self.timers if entry[2] not in parts]
        heapq.heapify(self.timers)
        for p in parts:
            for run_id, state in self.tables[p].items():
                self._arm(state, p)
        self._load_bulk()
        self._sweep_bulk = True  # re-apply every rule to the rebuilt table at the next tick (idempotent)

    def revoked(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            if tp.topic == self.commands_topic:
                self.tables.pop(tp.partition, None)
        self.timers = [entry for entry in self.timers if entry[2] in self.tables]
        heapq.heapify(self.timers)

    # -- commands ------------------------------------------------------------------------------------------

    def process(self, msg: Message, out: Emitter) -> None:
        cmd = self.serde.decode_as(RUN_COMMAND, msg.value())
        p = msg.partition()
        table = self.tables.setdefault(p, {})
        now = time.time_ns() // 1_000_000
        kind = cmd["kind"]
        state = table.get(cmd["run_id"])
        if kind == "start":
            if state is not None:
                return  # a duplicate or replayed event: the run exists already
            fn = self._function(cmd["function_id"])
            event = json.loads(cmd["event"])
            timeouts = fn.timeouts
            tr = st.start(cmd, event["id"], now, start_timeout_ms=timeouts.start_ms() if timeouts else None)
            self._apply(tr, fn, p, out, now)
            assert tr.state is not None
            for rule in self.bulk.values():
                if rule.hits(tr.state):
                    self._apply(st.cancel(tr.state, "bulk", rule.id, now), fn, p, out, now)
                    break
        elif kind == "cancel":
            if state is None:
                log.info("cancel for an unknown run ignored", extra={"run_id": cmd["run_id"]})
                return
            tr = st.cancel(state, cmd["reason"] or "api", cmd["source_id"], now)
            self._apply(tr, self.registry.by_id.get(state["function_id"]), p, out, now)
        elif kind == "execute":
            if state is None or st.is_ended(state) or cmd["attempt"] != state["attempt"]:
                return  # stale queue entry (cancelled, finished or superseded attempt)
            if state.get("wake_at") is not None:
                return  # sleeping or backing off: the timer resumes it
            self._execute(state, p, out, now)

    def _execute(self, state: dict[str, Any], p: int, out: Emitter, now: int) -> None:
        fn = self._function(state["function_id"])
        timeouts = fn.timeouts
        if state["status"] == "Queued":
            state = st.begin(state, now, finish_timeout_ms=timeouts.finish_ms() if timeouts else None)
            self.fn_logger.info("run started", extra={"run_id": state["run_id"], "function_id": fn.id})
        outcome = invoke(fn, state, now, self.fn_logger)
        done = time.time_ns() // 1_000_000
        if outcome.kind == "step":
            tr = st.step_completed(state, outcome.step_id, "run", outcome.output, done)  # type: ignore[arg-type]
        elif outcome.kind == "sleep":
            tr = st.sleep(state, outcome.step_id, outcome.wake_at, done)  # type: ignore[arg-type]
        elif outcome.kind == "send":
            events = [self._user_event(state, outcome.step_id, i, ev, done) for i, ev in enumerate(outcome.events or [])]
            tr = st.step_completed(state, outcome.step_id, "send_event", json.dumps([e["id"] for e in events]), done)  # type: ignore[arg-type]
            tr.user_events = events
        elif outcome.kind == "error":
            tr = st.failed_attempt(state, outcome.error or {}, fn.retries, done, backoff_ms=self.retry_backoff_ms,
                                   retriable=outcome.retriable)
        else:
            tr = st.completed(state, outcome.output or "null", done)
        if tr.state is None:
            tr.state = state
        try:
            self._apply(tr, fn, p, out, done)
        except OutputTooLarge as exc:
            # The new state (e.g. a huge step output) cannot be stored: fail the run rather than wedge it.
            error = {"error": str(exc), "message": str(exc), "name": "OutputTooLarge"}
            self._apply(st.failed_attempt(state, error, fn.retries, done, backoff_ms=self.retry_backoff_ms,
                                          retriable=False), fn, p, out, done)

    @staticmethod
    def _user_event(state: dict[str, Any], step_id: str | None, i: int, ev: dict[str, Any], now: int) -> dict[str, Any]:
        """Events sent by ``step.send_event`` get deterministic ids, so a retried step sends no duplicates."""
        return {"id": ev.get("id") or derived_ulid(now, "send", state["run_id"], step_id or "", str(i)),
                "name": ev["name"], "data": ev.get("data") or {}, "user": ev.get("user") or {},
                "ts": ev.get("ts") or now, "v": ev.get("v")}

    # -- effects -------------------------------------------------------------------------------------------

    def _apply(self, tr: st.Transition, fn: Function | None, p: int, out: Emitter, now: int) -> None:
        """Turn a transition into output records (all in the current transaction) and update the table."""
        new = tr.state
        if new is None:
            return
        self.tables.setdefault(p, {})[new["run_id"]] = new
        out.send(self.runs_topic, new["run_id"], RUN_STATE, new, partition=p)
        for cmd in tr.commands:
            out.send(self.commands_topic, cmd["run_id"], RUN_COMMAND, cmd, partition=p)
        for ev in tr.user_events:
            out.send(self.events_topic, ev["id"], EVENT, event_dict_to_record(ev))
        for ev in tr.system_events:
            out.send(self.system_topic, ev["id"], EVENT, event_dict_to_record(ev))
        if tr.ended:
            self.fn_logger.info("run ended", extra={"run_id": new["run_id"], "function_id": new["function_id"],
                                                    "status": new["status"], "reason": new.get("cancel_reason")})
            if fn is not None and fn.cancels:
                self._unlisten(fn, new, out)
        else:
            self._arm(new, p)

    def _unlisten(self, fn: Function, state: dict[str, Any], out: Emitter) -> None:
        """Tombstone an ended run's cancel listeners so the canceller's table (and the topic) forget them."""
        if self._index_partitions is None:  # looked up once, on the first run that ends with listeners
            self._index_partitions = t.partition_count(AdminClient(admin_config(self.servers)), self.index_topic)
        event = json.loads(state["event"])
        for listener in listeners_for(fn, event, state["run_id"], state["received_at"], state["queued_at"]):
            key = listener["join_key"]
            out.send(self.index_topic, listener_record_key(key, state["run_id"]), None, None,
                     partition=partition_for(key, self._index_partitions))

    def _arm(self, state: dict[str, Any], p: int) -> None:
        at = st.next_timer(state)
        if at is not None:
            heapq.heappush(self.timers, (at, state["run_id"], p))

    def _function(self, function_id: str) -> Function:
        fn = self.registry.by_id.get(function_id)
        if fn is None:
            raise UnknownFunction(f"function {function_id!r} is not served by this deployment")
        return fn

    # -- timers and bulk cancellations ---------------------------------------------------------------------

    def tick(self, out: Emitter, now: int) -> None:
        """Wake sleeping runs, resume retries, time out runs, and apply new bulk cancellations."""
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
        self._poll_bulk(out, now)

    def _load_bulk(self) -> None:
        """Read every bulk cancellation so far (at assignment), then keep polling for new ones in ``tick``."""
        if self._bulk_consumer is not None:
            return
        consumer = Consumer(consumer_config(self.servers, None, **{"enable.partition.eof": True}))
        consumer.assign([TopicPartition(self.bulk_topic, 0, OFFSET_BEGINNING)])
        while True:
            msg = consumer.poll(5.0)
            if msg is None:
                break
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    break
                continue
            self._bulk_record(msg)
        self._bulk_consumer = consumer

    def _bulk_record(self, msg: Message) -> BulkRule | None:
        if msg.value() is None:
            self.bulk.pop(msg.key().decode(), None)
            return None
        try:
            rule = BulkRule(self.serde.decode_as(BULK_CANCELLATION, msg.value()))
        except Exception:
            log.exception("bad bulk cancellation record skipped")
            return None
        self.bulk[rule.id] = rule
        return rule

    def _poll_bulk(self, out: Emitter, now: int) -> None:
        if self._bulk_consumer is None:
            return
        rules: list[BulkRule] = list(self.bulk.values()) if self._sweep_bulk else []
        self._sweep_bulk = False
        for msg in self._bulk_consumer.consume(100, timeout=0):
            if not msg.error():
                rule = self._bulk_record(msg)
                if rule is not None:
                    rules.append(rule)
        for rule in rules:
            if rule.stopped:
                continue
            for p, table in self.tables.items():
                for state in list(table.values()):
                    if rule.hits(state):
                        self._apply(st.cancel(state, "bulk", rule.id, now), self.registry.by_id.get(state["function_id"]),
                                    p, out, now)

    def close(self) -> None:
        if self._bulk_consumer is not None:
            self._bulk_consumer.close()
            self._bulk_consumer = None
