"""The service loop's side of rebalances: assignment changes, per-partition state, and the rebuild after an abort.

:class:`Rebalance` is a part of :class:`pipeline.kafka.loop.ServiceLoop` (the loop holds one). It owns the
assignment as the consumer's callbacks report it and keeps the processor's per-partition state in one place:
on assignment it restores the processor's :class:`~pipeline.kafka.tables.PartitionTables` and then calls
:meth:`~pipeline.kafka.processor.Processor.assigned`; on revocation it commits what a batch in progress has done
with the partitions, forgets their offsets and backlog, drops their tables and calls
:meth:`~pipeline.kafka.processor.Processor.revoked`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaException, TopicPartition

from .committing import Committing
from .deadletter import DeadLetterSink
from .lookahead import Lookahead
from .processor import Processor
from .store import StoreDir
from .tables import drop_tables, restore_tables

log = logging.getLogger("pipeline.loop")


class Rebalance:
    """The consumer's rebalance callbacks and the rewind-and-rebuild after an aborted transaction."""

    def __init__(self, *, name: str, servers: str, consumer: Consumer, processor: Processor, commits: Committing,
                 lookahead: Lookahead | None, commit_now: Callable[[], int], dead_letter: DeadLetterSink,
                 stores: StoreDir | None = None) -> None:
        self.name = name
        self.servers = servers
        self.consumer = consumer
        self.processor = processor
        self.commits = commits
        self.lookahead = lookahead
        self._commit_now = commit_now  # the loop's: what the batch in progress has done, output and offsets
        self.dead_letter = dead_letter  # records a restore cannot apply
        self.stores = stores  # where the processor's stored tables live (pipeline.kafka.store)
        self.assignment: list[TopicPartition] = []  # as last reported by the callbacks
        self.needs_rebuild = False
        self.restoring = False
        self.rebalanced = False  # the first assignment (and its restore) is done
        # inside the loop's batch: a rebalance served by a look for urgent records lands in the middle of it
        self.in_batch = False
        self.revoked_in_batch: set[tuple[str, int]] = set()  # partitions the rest of the batch skips
        # committed offsets the gate read for partitions without a position yet (ServiceLoop.processed_positions);
        # good until the assignment changes
        self.committed_at_start: dict[tuple[str, int], int] = {}

    def _restore(self, consumer: Consumer | None, partitions: list[TopicPartition]) -> None:
        self.committed_at_start.clear()
        restore_tables(self.processor.partition_tables(), partitions, servers=self.servers, consumer=consumer,
                       service=self.name, dead_letter=self.dead_letter, stores=self.stores)
        self.processor.assigned(partitions)

    def _drop(self, partitions: list[TopicPartition]) -> None:
        self.committed_at_start.clear()
        drop_tables(self.processor.partition_tables(), partitions)
        self.processor.revoked(partitions)

    def rebuild(self) -> None:
        """After an abort: rewind to the committed offsets and rebuild the processor's state from its changelog."""
        self.needs_rebuild = False
        if self.lookahead is not None:
            self.lookahead.clear()  # consumed again from the committed offsets
        assignment = self.consumer.assignment()
        if not assignment:
            return
        try:
            committed = self.consumer.committed(assignment, timeout=10)
        except KafkaException as exc:  # coordinator moving: try again after the next consume()
            log.warning("cannot read committed offsets yet", extra={"service": self.name, "error": str(exc)})
            self.needs_rebuild = True
            return
        for tp in committed:
            if tp.offset < 0:
                tp.offset = -2  # OFFSET_BEGINNING
            self.consumer.seek(tp)
        self._drop(assignment)
        self._restore(self.consumer, assignment)

    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Cooperative rebalancing: ``partitions`` are the ones added, not the whole assignment.
        have = {(tp.topic, tp.partition) for tp in self.assignment}
        self.assignment += [tp for tp in partitions if (tp.topic, tp.partition) not in have]
        log.info("partitions assigned", extra={"service": self.name,
                                               "partitions": [f"{tp.topic}[{tp.partition}]" for tp in partitions]})
        self.restoring = True
        try:
            self._restore(consumer, partitions)
        finally:
            self.restoring = False
        self.rebalanced = True

    def on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        commits = self.commits
        if commits.in_tx or (self.in_batch and commits.uncommitted):
            # Commit what has been done so far (output and offsets, revoked partitions included) before they go,
            # as Kafka Streams does, so their next owner neither redoes it nor restores a table without it: in
            # the middle of a batch (a look for urgent records served the rebalance), or between batches with a
            # transaction open across them (the commit interval).
            if self.in_batch:
                self._commit_now()  # a failure propagates out of consume() and the batch aborts and rewinds
            else:
                try:
                    self._commit_now()
                except KafkaException as exc:
                    # between batches, from the loop's own consume(): abort the open transaction here and
                    # rewind after it (an error that cannot be aborted is raised)
                    if commits.recover(exc, self.name):
                        self.needs_rebuild = True
        gone = {(tp.topic, tp.partition) for tp in partitions}
        self.assignment = [tp for tp in self.assignment if (tp.topic, tp.partition) not in gone]
        self.commits.forget(gone)  # produced nothing: the next owner may redo them
        if self.lookahead is not None:
            self.lookahead.drop(gone)
        self.revoked_in_batch |= gone
        log.info("partitions revoked", extra={"service": self.name,
                                              "partitions": [f"{tp.topic}[{tp.partition}]" for tp in partitions]})
        self._drop(partitions)
