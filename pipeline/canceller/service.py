"""The canceller: joins cancel signals with cancel listeners, partition by partition.

It consumes the compacted ``cancel-index`` topic, where the matcher writes listeners (when
runs are scheduled) and signals (when cancel events arrive), both partitioned by join key.
One partition is one independent join, so more canceller instances split the work.

Each partition's table is a state store (:class:`~.index.CancelIndex`). On assignment the loop opens it and
replays the partition from the offset stored with it up to the group's committed offset without emitting
(those matches were emitted and committed before), then the canceller continues from there.
A match emits a cancel command to the run owner (keyed by
run id) and tombstones the listener. The tombstone commits in one transaction with the consumed
offset; the command is sent at once (``at_once``), acknowledged before that commit, so the owner
need not wait for it. A command sent twice (the batch aborted and was processed again) is a no-op
the second time: cancelling an ended run does nothing, and a resume must match the run's wait.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import Message, TopicPartition

from ..config import Settings
from ..kafka import topics as t
from ..kafka.client import bootstrap
from ..kafka.emitter import Emitter
from ..kafka.processor import Processor, override
from ..kafka.store import Store
from ..kafka.tables import PartitionTables, StoredTables
from ..protocol.commands import cancel_command, resume_command
from ..protocol.keys import listener_record_key, parse_index_key, signal_record_key
from ..serde import CANCEL_LISTENER, CANCEL_SIGNAL, RUN_COMMAND, Serde
from .index import CancelIndex, Match, listener_from_record, signal_from_record

log = logging.getLogger("pipeline.canceller")

EXPIRY_EVERY_MS = 5000


class Canceller(Processor):
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
        # cancel-index partition -> its join table in a state store, brought up to date by the loop on assignment
        # by replaying the partition from the store's offset up to the group's committed offset without emitting
        # (those matches were emitted and committed before)
        self.indexes: StoredTables[CancelIndex] = StoredTables(
            self.index_topic, self._new_index, changelog=self.index_topic, upto_committed=True,
            label="canceller index")
        self._next_expiry = 0
        self.cancels_sent = 0
        self.resumes_sent = 0

    @override
    def topics(self) -> list[str]:
        return [self.index_topic]

    def _new_index(self, store: Store) -> CancelIndex:
        return CancelIndex(store, self.settings.cancel_signal_window_ms, self._replay)

    @override
    def partition_tables(self) -> Sequence[PartitionTables[Any]]:
        return [self.indexes]

    @override
    def assigned(self, partitions: list[TopicPartition]) -> None:
        parts = self.indexes.partitions(partitions)
        log.info("cancel index rebuilt", extra={"partitions": parts,
                                                "listeners": sum(self.indexes[p].listener_count for p in parts)})

    @override
    def process(self, msg: Message, out: Emitter) -> None:
        p = msg.partition()
        if p is None:
            raise ValueError("not a consumed record")
        index = self.indexes[p]
        now = time.time_ns() // 1_000_000
        for m in self._apply(index, msg, match=True):
            if m.wait_step is None:
                command = cancel_command(m.run_id, m.function_id, "cancel_on", m.event_id, now)
                self.cancels_sent += 1
            else:
                command = resume_command(m.run_id, m.function_id, m.wait_step, m.event or "null", now)
                self.resumes_sent += 1
            out.send(self.commands_topic, m.run_id, RUN_COMMAND, command, partition=m.owner_partition, at_once=True)
            out.send(self.index_topic, listener_record_key(m.join_key, m.ident), None, None, partition=p)
            index.remove_listener(m.join_key, m.ident, m.expires_at)

    def _replay(self, index: CancelIndex, msg: Message) -> None:
        self._apply(index, msg, match=False)

    def _apply(self, index: CancelIndex, msg: Message, *, match: bool) -> list[Match]:
        """Apply one cancel-index record to its partition's join; the matches it makes (``match``: else none)."""
        value = msg.value()
        if value is None:  # a tombstone: a listener or signal forgotten
            raw = msg.key()
            if raw is None:
                raise ValueError(f"tombstone without a key on {self.index_topic}")
            kind, join, ident = parse_index_key(raw.decode())
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

    @override
    def tick(self, out: Emitter, now: int) -> None:
        """Every few seconds, forget expired signals and listeners and tombstone them on the topic."""
        if now < self._next_expiry:
            return
        self._next_expiry = now + EXPIRY_EVERY_MS
        for p, index in self.indexes.items():
            for kind, key, ident in index.expired(now):
                rkey = signal_record_key(key, ident) if kind == "signal" else listener_record_key(key, ident)
                out.send(self.index_topic, rkey, None, None, partition=p)
