"""The service loop's side of failures and rebalances: abort and rewind, rebuild, assignment changes.

A mixin of :class:`pipeline.kafka.loop.ServiceLoop` (the loop's state is its own), kept in a module of its
own so the loop's batch path reads on its own.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from . import metrics

log = logging.getLogger("pipeline.loop")


class Rebalancing:
    """Abort-and-rewind after a failed commit, and the consumer's rebalance callbacks."""

    # provided by ServiceLoop
    name: str
    exactly_once: bool
    consumer: Any
    producer: Any
    processor: Any
    emitter: Any
    lookahead: Any
    positions: dict[tuple[str, int], int]
    _uncommitted: dict[tuple[str, int], int]
    _assignment: list[TopicPartition]
    _in_tx: bool
    _deferred: list[Any]
    _at_once_sent: bool
    _delivery_failed: Any
    _in_batch: bool
    _needs_rebuild: bool
    _restoring: bool
    _rebalanced: bool
    _revoked_in_batch: set[tuple[str, int]]

    if TYPE_CHECKING:  # ServiceLoop's
        def _commit_now(self) -> int: ...

    def _handle_commit_failure(self, exc: KafkaException) -> None:
        err = exc.args[0]
        self.emitter.clear()
        self._deferred.clear()
        # An at-once record not acknowledged (txn_requires_abort, also without transactions) means the batch is
        # processed again, in either mode: going on would commit offsets past it
        if not err.fatal() and (self._in_tx or self._at_once_sent) and (
                err.txn_requires_abort() or (self.exactly_once and err.retriable())):
            # _at_once_sent: at-once records were not all acknowledged (no transaction need be open); the batch
            # is processed again from the committed offsets, and sends them again
            log.warning("aborting transaction", extra={"service": self.name, "error": str(err)})
            metrics.TX_ABORTS.labels(self.name).inc()
            if self._in_tx and self.exactly_once:
                self.producer.abort_transaction(20)
            self._in_tx = False
            self._at_once_sent = False
            self._delivery_failed = None  # the replay sends the batch's records again
            self._uncommitted.clear()
            self._needs_rebuild = True
            self._rebuild()
            return
        if not self.exactly_once and err.retriable():
            # at-least-once: the output is flushed; the offsets go with the next batch (or are redelivered)
            log.warning("offset commit failed; will retry with the next batch", extra={"service": self.name,
                                                                                     "error": str(err)})
            return
        raise exc

    def _rebuild(self) -> None:
        """After an abort: rewind to the committed offsets and rebuild the processor's state from its changelog."""
        self._needs_rebuild = False
        if self.lookahead is not None:
            self.lookahead.clear()  # consumed again from the committed offsets
        assignment = self.consumer.assignment()
        if not assignment:
            return
        try:
            committed = self.consumer.committed(assignment, timeout=10)
        except KafkaException as exc:  # coordinator moving: try again after the next consume()
            log.warning("cannot read committed offsets yet", extra={"service": self.name, "error": str(exc)})
            self._needs_rebuild = True
            return
        for tp in committed:
            if tp.offset < 0:
                tp.offset = -2  # OFFSET_BEGINNING
            self.consumer.seek(tp)
        on_revoke = getattr(self.processor, "revoked", None)
        if on_revoke:
            on_revoke(assignment)
        on_assign = getattr(self.processor, "assigned", None)
        if on_assign:
            on_assign(self.consumer, assignment)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Cooperative rebalancing: ``partitions`` are the ones added, not the whole assignment.
        have = {(tp.topic, tp.partition) for tp in self._assignment}
        self._assignment += [tp for tp in partitions if (tp.topic, tp.partition) not in have]
        log.info("partitions assigned", extra={"service": self.name,
                                               "partitions": [f"{tp.topic}[{tp.partition}]" for tp in partitions]})
        on_assign = getattr(self.processor, "assigned", None)
        self._restoring = True
        try:
            if on_assign:
                on_assign(consumer, partitions)
        finally:
            self._restoring = False
        self._rebalanced = True

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self._in_batch and (self._in_tx or self._uncommitted):
            # Served by _poll_urgent's consume in the middle of a batch: commit what the batch has done so far
            # (output and offsets, revoked partitions included) before they go, as Kafka Streams does, so
            # their next owner neither redoes it nor restores a table without it. A failure propagates out
            # of consume() and the loop aborts and rewinds.
            self._commit_now()
        gone = {(tp.topic, tp.partition) for tp in partitions}
        self._assignment = [tp for tp in self._assignment if (tp.topic, tp.partition) not in gone]
        for key in gone:
            self.positions.pop(key, None)
            self._uncommitted.pop(key, None)  # produced nothing: the next owner may redo them
        if self.lookahead is not None:
            self.lookahead.drop(gone)
        self._revoked_in_batch |= gone
        log.info("partitions revoked", extra={"service": self.name,
                                              "partitions": [f"{tp.topic}[{tp.partition}]" for tp in partitions]})
        on_revoke = getattr(self.processor, "revoked", None)
        if on_revoke:
            on_revoke(partitions)
