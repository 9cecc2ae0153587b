"""The canceller: joins cancel signals with cancel listeners, partition by partition.

It consumes the compacted ``cancel-index`` topic, where the matcher writes listeners (when
runs are scheduled) and signals (when cancel events arrive), both partitioned by join key.
One partition is one independent join, so more canceller instances split the work.

On assignment it rebuilds each partition's table by replaying the partition from the start
up to the group's committed offset without emitting (those matches were emitted and committed
before), then continues from there. A match emits a cancel command to the run owner (keyed by
run id) and tombstones the listener. The tombstone commits in one transaction with the consumed
offset; the command is sent at once (``at_once``), acknowledged before that commit, so the owner
need not wait for it. A command sent twice (the batch aborted and was processed again) is a no-op
the second time: cancelling an ended run does nothing, and a resume must match the run's wait.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import Message, TopicPartition

from ..config import Settings
from ..kafka import metrics
from ..kafka import topics as t
from ..kafka.client import bootstrap
from ..kafka.deadletter import DeadLetterSink
from ..kafka.emitter import Emitter
from ..kafka.restore import restore
from ..protocol.commands import cancel_command, resume_command
from ..protocol.keys import listener_record_key, parse_index_key, signal_record_key
from ..serde import CANCEL_LISTENER, CANCEL_SIGNAL, RUN_COMMAND, Serde
from .index import CancelIndex, Match, listener_from_record, signal_from_record

log = logging.getLogger("pipeline.canceller")

EXPIRY_EVERY_MS = 5000


class Canceller:
    """The canceller processor for :class:`pipeline.kafka.loop.ServiceLoop`."""

    name = "canceller"
    # Its transactional output is tombstones in cancel-index, where the signals it waits for land at once: produced
    # at the commit, they do not hide those signals from itself for a whole batch (committing.py).
    defer_output = True

    def __init__(self, settings: Settings, serde: Serde | None = None) -> None:
        self.settings = settings
        self.serde = serde or Serde()
        self.index_topic = settings.topic(t.CANCEL_INDEX)
        self.commands_topic = settings.topic(t.RUN_COMMANDS)
        self.servers = bootstrap(settings)
        self.restore_dead_letters = DeadLetterSink(self.servers, settings.topic(t.DEAD_LETTER), self.name)
        self.indexes: dict[int, CancelIndex] = {}
        self._next_expiry = 0
        self.cancels_sent = 0
        self.resumes_sent = 0

    def topics(self) -> list[str]:
        return [self.index_topic]

    def _new_index(self) -> CancelIndex:
        return CancelIndex(self.settings.cancel_signal_window_ms)

    def assigned(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        """Replay each assigned partition up to its committed offset to rebuild the join table."""
        parts = [tp.partition for tp in partitions if tp.topic == self.index_topic]
        committed = consumer.committed([TopicPartition(self.index_topic, p) for p in parts], timeout=30)
        ends = {tp.partition: max(tp.offset, 0) for tp in committed}
        for p in parts:
            self.indexes[p] = self._new_index()
        count, seconds = restore(self.servers, self.index_topic, [p for p in parts if ends.get(p, 0) > 0],
                                 lambda msg: self._apply(msg, match=False), end_offsets=ends,
                                 label="canceller index", dead_letter=self.restore_dead_letters)
        metrics.RESTORE_SECONDS.labels(self.name, self.index_topic).set(seconds)
        metrics.RESTORE_RECORDS.labels(self.name, self.index_topic).set(count)
        log.info("cancel index rebuilt", extra={"partitions": parts, "records": count, "seconds": round(seconds, 3),
                                                "listeners": sum(i.listener_count for i in self.indexes.values())})

    def revoked(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            if tp.topic == self.index_topic:
                self.indexes.pop(tp.partition, None)

    def process(self, msg: Message, out: Emitter) -> None:
        now = time.time_ns() // 1_000_000
        for m in self._apply(msg, match=True):
            if m.wait_step is None:
                command = cancel_command(m.run_id, m.function_id, "cancel_on", m.event_id, now)
                self.cancels_sent += 1
            else:
                command = resume_command(m.run_id, m.function_id, m.wait_step, m.event or "null", now)
                self.resumes_sent += 1
            out.send(self.commands_topic, m.run_id, RUN_COMMAND, command, partition=m.owner_partition, at_once=True)
            out.send(self.index_topic, listener_record_key(m.join_key, m.ident), None, None, partition=msg.partition())
            self.indexes[msg.partition()].remove_listener(m.join_key, m.ident)

    def _apply(self, msg: Message, *, match: bool) -> list[Match]:
        p = msg.partition()
        index = self.indexes.get(p)
        if index is None:
            index = self.indexes[p] = self._new_index()
        value = msg.value()
        if value is None:
            kind, join, ident = parse_index_key(msg.key().decode())
            if kind == "signal":
                index.remove_signal(join, ident)
            else:
                index.remove_listener(join, ident)
            return []
        name, record = self.serde.decode(value)
        if name == CANCEL_LISTENER:
            return index.add_listener(record["join_key"], listener_from_record(record), match=match)
        if name == CANCEL_SIGNAL:
            return index.add_signal(record["join_key"], signal_from_record(record), match=match)
        raise ValueError(f"unexpected {name} record on {self.index_topic}")

    def tick(self, out: Emitter, now: int) -> None:
        """Every few seconds, forget expired signals and listeners and tombstone them on the topic."""
        if now < self._next_expiry:
            return
        self._next_expiry = now + EXPIRY_EVERY_MS
        for p, index in self.indexes.items():
            for kind, key, ident in index.expired(now):
                rkey = signal_record_key(key, ident) if kind == "signal" else listener_record_key(key, ident)
                out.send(self.index_topic, rkey, None, None, partition=p)
