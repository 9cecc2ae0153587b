"""The service loop's output side: transactions, at-once records, and committing offsets.

A part of :class:`pipeline.kafka.loop.ServiceLoop` (the loop holds one; its state is its own), kept in a module
of its own so that the batch path in loop.py reads on its own. What it guarantees:

* exactly-once: output and the input offsets that caused it commit in one transaction, begun at the first
  output record (a batch without output opens none). A transaction may span batches (:meth:`Committing.due`):
  it stays open while the input keeps coming in full batches, for at most ``commit_interval`` or
  ``max_tx_records`` output records, and commits at once when a batch is not full (the service caught up), on
  demand (an urgent record, :meth:`request`, a rebalance, a stop). Readers see the output only at the commit, so
  an open transaction adds latency only while there is a backlog, when it buys throughput;
* at-once records (``Emitter.send(..., at_once=True)``) go through a plain idempotent producer as soon as
  their input is processed, and are acknowledged before any offset covering that input commits;
* at-least-once (transactions off): produce, flush, then commit offsets.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer, TopicPartition

from . import metrics
from .deadletter import dead_letter_headers
from .emitter import Emitter, Pending
from .lookahead import Lookahead

log = logging.getLogger("pipeline.loop")

SEND_OFFSETS_TIMEOUT = 10.0
#: Output records after which an open transaction commits even before ``commit_interval``: bounds what a
#: defer_output processor holds in memory and what one commit has to flush.
TX_MAX_RECORDS = 50_000
AT_ONCE_FLUSH_TIMEOUT = 20.0  # as long as a transaction's commit may take


class Committing:
    """Transactions, at-once records and offset commits of a ServiceLoop: the loop holds one, and everything here is
    this object's. ``assignment`` reads the loop's current assignment (its rebalance part owns it)."""

    def __init__(self, *, exactly_once: bool, consumer: Any, emitter: Emitter, defer_output: bool | frozenset[str],
                 offset_commit_interval: float, commit_interval: float = 0.0, max_tx_records: int = TX_MAX_RECORDS,
                 assignment: Callable[[], list[TopicPartition]], positions: dict[tuple[str, int], int]) -> None:
        self.exactly_once = exactly_once
        self.consumer = consumer
        # set by the loop once made (their delivery callback is this object's): the transactional producer, and
        # the plain idempotent one of at-once records (the same one without transactions)
        self.producer: Any = None
        self.at_once_producer: Any = None
        self.emitter = emitter
        self.lookahead: Lookahead | None = None
        self.offset_commit_interval = offset_commit_interval
        self.commit_interval = commit_interval  # longest a transaction stays open across full batches
        self.max_tx_records = max_tx_records
        # the current commit window: when its first batch began (None: no batch since the last commit), output
        # records produced in it, and whether a commit was asked for (urgent records, a processor)
        self.window_began: float | None = None
        self.window_records = 0
        self.requested = False
        self._assignment = assignment
        # committed positions per partition (lag in the stats callback, _advance_positions)
        self.positions = positions
        self.uncommitted: dict[tuple[str, int], int] = {}  # offsets consumed (or processed) and not yet committed
        self.in_tx = False  # a transaction is open (at least once: output to flush before the offsets)
        self.at_once_sent = False  # at-once records produced and not yet flushed
        self.delivery_failed: KafkaError | None = None
        self.last_commit = time.monotonic()
        # defer_output: the processor's transactional output (True), or its output to these topics (a set), is
        # produced just before the commit (see flush_pending)
        self.defer_output: bool | frozenset[str] = frozenset(defer_output) \
            if isinstance(defer_output, (set, frozenset)) else bool(defer_output)
        self.deferred: Pending = []
        # State stores (pipeline.kafka.tables.StoredTables): per partition of the changelog topics ``tracked``, the
        # offset after the last record of ours delivered there (from the delivery reports), and what to call after
        # a commit (to write the stores' open writes with those offsets) and after an abort (to drop them)
        self.tracked: frozenset[str] = frozenset()
        self.changelog_offsets: dict[tuple[str, int], int] = {}
        self.on_commit: Callable[[dict[tuple[str, int], int]], None] | None = None
        self.on_abort: Callable[[], None] | None = None

    def ensure_tx(self) -> None:
        """Begin the transaction at the first output record, so a batch without output opens none (at least once:
        mark the output to flush before the offsets)."""
        if not self.in_tx:
            if self.exactly_once:
                self.producer.begin_transaction()
            self.in_tx = True

    def request(self) -> None:
        """Commit at the end of the current batch, whatever the interval (an urgent record processed early whose
        output someone waits for; a processor that asks)."""
        self.requested = True

    def begin_batch(self) -> None:
        """A batch begins: the first one after a commit opens the commit window."""
        if self.window_began is None:
            self.window_began = time.monotonic()

    def due(self, *, caught_up: bool) -> bool:
        """Whether the batch just processed ends its commit window (the loop then has the processor emit what it
        kept back, ``end_batch``, and commits). Yes when the batch was not full (``caught_up``: nothing more was
        waiting, so holding the output back would only add latency), on request, when the window has produced
        ``max_tx_records`` records, or when it has been open ``commit_interval``. Otherwise the transaction
        stays open and the next batch goes into it: one commit (two coordinator round trips and a marker per
        partition) for many batches while a backlog lasts."""
        if caught_up or self.requested or self.window_began is None or self.window_records >= self.max_tx_records:
            return True
        return time.monotonic() - self.window_began >= self.commit_interval

    def end_window(self) -> None:
        """The window's commit is done (or was not needed): the next batch opens a new one."""
        self.window_began = None
        self.window_records = 0
        self.requested = False

    def _advance_positions(self) -> None:
        """Count the consumer's positions as consumed: they step over transaction markers and aborted records,
        which ``msg.offset() + 1`` never does. Without this an idle partition whose last record is a commit
        marker would look one record behind for ever, and the watermark gate (which compares committed
        offsets with end offsets) would wait on it."""
        assignment = self._assignment()
        if not assignment:
            return
        try:
            positions = self.consumer.position(assignment)
        except KafkaException:
            return
        ahead = self.lookahead.first_offsets() if self.lookahead is not None else {}
        for tp in positions:
            key = (tp.topic, tp.partition)
            if key in ahead:  # consumed ahead, not processed: its offsets advance as the backlog is taken
                continue
            if tp.offset >= 0 and tp.offset > max(self.positions.get(key, -1), self.uncommitted.get(key, -1)):
                self.uncommitted[key] = tp.offset

    def commit(self, *, force: bool, advance: bool = True, with_offsets: bool = True) -> None:
        """Commit the open transaction with every consumed offset not yet committed (``with_offsets=False``:
        the output only; the offsets go with a later commit).

        Offsets of batches that produced nothing wait (at most ``offset_commit_interval``) for the
        next transaction instead of opening one each: an empty transaction costs a broker round
        trip and, right after another commit, a CONCURRENT_TRANSACTIONS back-off. Redoing such
        records after a crash is harmless, since they produced nothing. The interval is short
        (20 ms by default) because the watermark gate waits for these commits."""
        due = force or time.monotonic() - self.last_commit >= self.offset_commit_interval
        if advance and (due or self.in_tx):
            self._advance_positions()
        offsets = self.uncommitted if with_offsets else {}
        if not self.in_tx and not (offsets and due):
            return
        tps = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        if tps and self.at_once_sent:
            self.flush_at_once()
        if self.deferred:  # held back by a defer_output processor until now (see flush_pending); after the
            # at-once flush, which must not hold partitions back
            produce_all(self.producer, self.deferred, self.tracked, self._tracked_callback())
        if self.exactly_once:
            self.ensure_tx()
            if tps:
                # One bounded try, never a retry loop: if the group is rebalancing (a coordinator
                # moved, a broker died), only this thread's next consume() can complete the
                # rebalance, so waiting here would deadlock. On failure the batch is aborted and
                # replayed from the committed offsets (see _handle_commit_failure).
                self.producer.send_offsets_to_transaction(tps, self.consumer.consumer_group_metadata(),
                                                          SEND_OFFSETS_TIMEOUT)
            retrying(lambda: self.producer.commit_transaction(20), attempts=3)
            self.in_tx = False
            if self.on_commit is not None:
                self.producer.poll(0)  # the delivery reports not served yet: the stores' offsets
                self.on_commit(offsets)
        else:
            # at least once: the output is on the broker before the offsets commit, or the batch is processed again
            self._check_delivered(self.producer.flush(60))
            if tps:
                self.consumer.commit(offsets=tps, asynchronous=False)
            self.in_tx = False
            if self.on_commit is not None:
                self.on_commit(offsets)
        if offsets:
            self.positions.update(offsets)
            offsets.clear()
            self.last_commit = time.monotonic()

    def flush_pending(self) -> int:
        """Hand the processor's queued output to the producers; returns the number of records."""
        at_once = self.emitter._at_once
        n = len(at_once)
        if n:
            self.at_once_sent = True  # first: a produce that raises half-way still forces the flush check
            produce_all(self.at_once_producer, at_once)
            if not self.exactly_once:
                self.ensure_tx()  # at-least-once: flushed before the offsets
        pending = self.emitter._pending
        if not pending:
            self.window_records += n
            return n
        self.ensure_tx()  # at-least-once: marks "output to flush before the offsets"
        n += len(pending)
        self.window_records += n
        defer = self.defer_output
        if defer:
            # Kept until the commit: the transaction's first record in a partition holds that partition's last
            # stable offset, so read-committed readers see nothing past it, *other producers' records too*,
            # until the commit. Written at the end, the matcher's starts hide the at-once cancel commands in
            # run-commands for the length of a commit, not of a whole batch. Costs its readers nothing: they
            # see the records at the commit either way. A set of topics defers only those (the run owner's
            # cancel-index tombstones; its invocations are read uncommitted and must go at once); order within
            # a partition is kept, since a topic's records are all deferred or none.
            if defer is True:
                self.deferred.extend(pending)
                pending.clear()
                return n
            now: Pending = []
            for record in pending:
                (self.deferred if record[0] in defer else now).append(record)
            pending[:] = now
        produce_all(self.producer, pending, self.tracked, self._tracked_callback())
        return n

    def dead_letter(self, topic: str, service: str, msg: Message, exc: Exception) -> None:
        """Copy a record the processor failed on to ``topic``, in the batch's transaction."""
        headers = dead_letter_headers(service, msg, exc)
        self.ensure_tx()
        self.producer.produce(topic, value=msg.value(), key=msg.key(), headers=headers)

    def forget(self, partitions: set[tuple[str, int]]) -> None:
        """Revoked partitions: their records that produced nothing may be redone by their next owner."""
        for key in partitions:
            self.positions.pop(key, None)
            self.uncommitted.pop(key, None)

    def recover(self, exc: KafkaException, service: str) -> bool:
        """After a failed commit (or produce): abort the batch if that is what the error asks, and say whether the
        loop must rewind to the committed offsets and rebuild; at least once, a retriable offset commit is left
        to the next batch; anything else is raised."""
        err = exc.args[0]
        self.emitter.clear()
        self.deferred.clear()
        # An at-once record not acknowledged (txn_requires_abort, also without transactions) means the batch is
        # processed again, in either mode: going on would commit offsets past it
        if not err.fatal() and (self.in_tx or self.at_once_sent) and (
                err.txn_requires_abort() or (self.exactly_once and err.retriable())):
            # at_once_sent: at-once records were not all acknowledged (no transaction need be open); the batch
            # is processed again from the committed offsets, and sends them again
            log.warning("aborting transaction", extra={"service": service, "error": str(err)})
            metrics.TX_ABORTS.labels(service).inc()
            if self.in_tx and self.exactly_once:
                self.producer.abort_transaction(20)
            self.in_tx = False
            self.at_once_sent = False
            self.delivery_failed = None  # the replay sends the batch's records again
            self.uncommitted.clear()
            self.end_window()
            self.changelog_offsets.clear()  # some were of the aborted transaction
            if self.on_abort is not None:
                self.on_abort()
            return True
        if not self.exactly_once and err.retriable():
            # at-least-once: the output is flushed; the offsets go with the next batch (or are redelivered)
            log.warning("offset commit failed; will retry with the next batch", extra={"service": service,
                                                                                     "error": str(err)})
            return False
        raise exc

    def delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.delivery_failed = err
        elif self.tracked:
            self.tx_delivered(err, msg)

    def _tracked_callback(self) -> Callable[[KafkaError | None, Message], None]:
        """The delivery callback of a changelog record: at least once, the producer's own (it also notes failures)."""
        return self.tx_delivered if self.exactly_once else self.delivered

    def tx_delivered(self, err: KafkaError | None, msg: Message) -> None:
        """A transactional record's delivery report: note where a changelog record landed (a failed one aborts
        the transaction anyway)."""
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        if err is None and topic in self.tracked and partition is not None and offset is not None:
            key = (topic, partition)
            if offset + 1 > self.changelog_offsets.get(key, -1):
                self.changelog_offsets[key] = offset + 1

    def flush_at_once(self) -> None:
        """Have every at-once record acknowledged before offsets that cover its input are committed. A record
        not acknowledged aborts the batch, which is then processed again (and sends it again)."""
        self._check_delivered(self.at_once_producer.flush(AT_ONCE_FLUSH_TIMEOUT))
        self.at_once_sent = False

    def _check_delivered(self, remaining: int) -> None:
        """After a flush: raise an abortable error (the batch is processed again) if records are still unacknowledged
        or a delivery report said one was lost."""
        failed, self.delivery_failed = self.delivery_failed, None
        if remaining or failed is not None:
            reason = f"{remaining} records not acknowledged" if remaining else f"record lost: {failed}"
            code = KafkaError._TIMED_OUT if remaining or failed is None else failed.code()
            raise KafkaException(KafkaError(code, reason,
                                            retriable=True, txn_requires_abort=True))


def produce_all(producer: Producer, records: Pending, tracked: frozenset[str] = frozenset(),
                on_tracked: Callable[[KafkaError | None, Message], None] | None = None) -> None:
    """Hand ``records`` to ``producer`` (waiting for room in its queue when it is full), then empty the list.
    Records to a ``tracked`` topic (a state store's changelog) get ``on_tracked`` as their delivery callback,
    the others none: a callback per record would cost every output record a call into Python."""
    produce = producer.produce
    for topic, key, value, partition, headers in records:
        while True:
            try:
                if tracked and topic in tracked:
                    produce(topic, value, key, partition, on_delivery=on_tracked, headers=headers)
                elif headers is None:
                    # positional: confluent-kafka parses keyword arguments at twice the cost (~0.8 against 0.35
                    # µs a record); the matcher produces ~3.5 records per event
                    produce(topic, value, key, partition)
                else:
                    produce(topic, value, key, partition, headers=headers)
                break
            except BufferError:  # local queue full: let librdkafka drain, then retry
                producer.poll(0.05)
    records.clear()


def retrying(call: Any, attempts: int = 5) -> None:
    """Call a transactional API, repeating it on retriable errors as librdkafka asks (abortable and fatal
    errors propagate to the loop, which aborts and rewinds, or stops)."""
    for attempt in range(attempts):
        try:
            call()
            return
        except KafkaException as exc:
            err = exc.args[0]
            if attempt == attempts - 1 or not err.retriable() or err.txn_requires_abort():
                raise
            log.warning("retrying transactional call", extra={"error": str(err), "attempt": attempt + 1})
            time.sleep(0.1 * (attempt + 1))
