"""The one consume → process → produce loop that every service runs.

A service is a :class:`~pipeline.kafka.processor.Processor` (every hook the loop calls is declared there): it says
which topics it reads, turns each record into output records through an :class:`~pipeline.kafka.emitter.Emitter`,
declares per-partition tables that the loop restores on assignment and drops on revocation
(:mod:`pipeline.kafka.tables`), may emit on a timer (``tick``), may keep output back until the commit
(``end_batch``) and may mark records urgent (``urgent``). The loop owns everything Kafka-specific:

* batch consume (``consume(batch_size)``), and produce as the records come (no linger);
* urgent records (cancellations) processed ahead of a backlog consumed in advance
  (:mod:`pipeline.kafka.lookahead`);
* exactly-once: output and the input offsets that caused it commit in one Kafka transaction
  (``send_offsets_to_transaction``, consumers read ``read_committed``). While the input comes in full batches
  (a backlog) a transaction spans batches for up to ``PIPELINE_COMMIT_INTERVAL_MS``; a batch that is not full,
  an urgent record, a rebalance and a stop commit at once (:meth:`Committing.due`). Or at-least-once
  (produce, flush, then commit offsets) when transactions are off. Records marked ``at_once``
  (cancel signals and commands, whose readers are idempotent) skip the transaction and are
  acknowledged before the offsets commit: at least once, without waiting for a commit
  (:mod:`pipeline.kafka.committing`);
* dead letters: a record that fails to decode or to process is copied to the dead-letter
  topic with the reason, source topic, partition and offset in headers, counted, and the
  loop goes on. Output of a failed record is dropped, never half-sent;
* rebalances: the processor's tables restored or dropped, then its ``assigned``/``revoked`` hooks
  (:mod:`pipeline.kafka.rebalance`);
* SIGTERM/SIGINT (or :meth:`ServiceLoop.stop`): finish the batch, commit, leave the group.

If a transaction has to be aborted, in-memory state may be ahead of what was committed (by every batch of the
open transaction), so the loop rewinds to the committed offsets and asks the processor to rebuild.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from ..config import Settings
from ..protocol.ids import consumer_group
from ..serde import Serde
from . import metrics
from .client import bootstrap, consumer_config, producer_config
from .committing import Committing
from .deadletter import DeadLetterSink
from .emitter import Emitter
from .lookahead import Lookahead
from .processor import Processor
from .rebalance import Rebalance
from .store import StoreDir, state_dir
from .tables import StoredTables, abort_tables, checkpoint_tables
from .watchdog import Heart

log = logging.getLogger("pipeline.loop")

LOOKAHEAD_BATCHES = 10  # with an urgent() hook: records consumed ahead, in batches
# With an urgent() hook: how long a batch runs between two looks for newly arrived cancels. A time, not a
# record count: a record costs the owner 0.1 ms idle and up to 1 ms in a burst on shared cores, so 64 records
# between looks had a cancel wait 30-60 ms for the look alone there. A look is one consume(timeout=0).
URGENT_LOOK_SECONDS = 0.005
# Urgent records get a commit of their own when the work still ahead of them in the batch is expected to take
# at least this long (else the batch's commit, as soon, carries them). A time, not a record count (it was 128
# records: up to 130 ms of work in a burst, while a commit takes 20-60 ms there).
EARLY_COMMIT_SECONDS = 0.005


class ServiceLoop:
    """Run a processor against Kafka until stopped. One instance = one consumer + one producer.

    Made of parts, each the owner of its own state: :attr:`commits` (transactions, at-once records, offsets;
    :mod:`pipeline.kafka.committing`) and :attr:`rebalance` (assignment, per-partition tables, rebuilds;
    :mod:`pipeline.kafka.rebalance`)."""

    def __init__(self, processor: Processor, settings: Settings | None = None, *, group_id: str | None = None,
                 exactly_once: bool | None = None, poll_timeout: float = 0.1,
                 consumer_overrides: dict[str, Any] | None = None) -> None:
        self.processor = processor
        self.settings = settings or Settings()
        self.name: str = processor.name
        self.servers = bootstrap(self.settings)
        self.group_id = group_id or consumer_group(self.settings.topic_prefix, self.name)
        self.exactly_once = self.settings.exactly_once if exactly_once is None else exactly_once
        self.poll_timeout = poll_timeout
        self.serde = Serde()
        self.dead_letter_topic = self.settings.topic("dead-letter")
        self._stop = threading.Event()
        positions: dict[tuple[str, int], int] = {}  # committed positions per partition: the commits' (lag)
        stats = {"statistics.interval.ms": 5000, "stats_cb": metrics.stats_callback(self.name, positions)} \
            if self.settings.metrics_port else {}
        # client.id: the instance id names this member in the group's description also without static membership
        # (pipeline.apps.applied finds each matcher's progress by it)
        overrides = {"client.id": self.settings.instance_id, **stats, **(consumer_overrides or {})}
        self.consumer = Consumer(consumer_config(
            self.servers, self.group_id, read_committed=True, **overrides,
            instance_id=self.settings.instance_id if self.settings.static_membership else None))
        self.emitter = Emitter(self.serde, self.settings)
        commits = self.commits = Committing(
            exactly_once=self.exactly_once, consumer=self.consumer, emitter=self.emitter,
            defer_output=processor.defer_output, offset_commit_interval=self.settings.offset_commit_interval_ms / 1000,
            commit_interval=self.settings.commit_interval_ms / 1000,
            assignment=lambda: self.rebalance.assignment, positions=positions)
        txid = f"{self.group_id}-{self.settings.instance_id}" if self.exactly_once else None
        # No linger: a batch's output is sent as it is produced and the commit follows at once, so lingering
        # only delays the records a worker or the next service is waiting for (measured: +2 ms per worker hop).
        # librdkafka still batches whatever accumulates while a request is in flight.
        # At least once (no transactions): every delivery is checked before offsets commit, as at-once records are
        tx_conf: dict[str, Any] = {"linger.ms": 0, **({} if self.exactly_once else {"on_delivery": commits.delivered})}
        # State stores: their changelog records' delivery reports give the offsets each store is checkpointed with
        stored = [tb for tb in processor.partition_tables() if isinstance(tb, StoredTables)]
        commits.tracked = frozenset(tb.changelog for tb in stored if not tb.upto_committed and tb.changelog)
        if stored:
            commits.on_commit = lambda offsets: checkpoint_tables(processor.partition_tables(),
                                                                  commits.changelog_offsets, offsets)
            commits.on_abort = lambda: abort_tables(processor.partition_tables())
        commits.producer = Producer(producer_config(self.servers, transactional_id=txid, **tx_conf))
        # Records a processor marks ``at_once`` (see Emitter.send) skip the transaction: a plain idempotent
        # producer sends them when their input is processed, and the commit has them acknowledged first.
        # Made up front, not at the first such record: an idempotent producer gets a producer id from the broker
        # before it can send, and a matcher that made it at its first cancel signal, during a burst, held every
        # cancel of the burst for 0.5-1.2 s (bench/steps.py).
        at_once_conf: dict[str, Any] = {"linger.ms": 0, "on_delivery": commits.delivered}
        commits.at_once_producer = Producer(producer_config(self.servers, **at_once_conf)) \
            if self.exactly_once else commits.producer
        self.processed = 0
        self.dead_lettered = 0
        self.heart = Heart(self.name)  # beaten every iteration; a Watchdog may watch it (pipeline run/dev)
        # Hooks called once per batch only if the processor implements them (checked once, here)
        kind = type(processor)
        self._ticks = kind.tick is not Processor.tick
        self._ends_batch = kind.end_batch is not Processor.end_batch
        # urgent(msg): records to process ahead of the backlog (cancellations); see lookahead.py
        urgent = kind.urgent is not Processor.urgent
        self.lookahead = Lookahead(self.settings.batch_size * LOOKAHEAD_BATCHES) if urgent else None
        commits.lookahead = self.lookahead
        # commit_urgent = False: the processor's urgent output that anyone waits for is all sent at once (the
        # matcher's signals), so urgent records need no commit of their own
        self._commit_urgent = bool(processor.commit_urgent)
        self._record_seconds = 0.0005  # a record's processing time, averaged over recent batches
        self.rebalance = Rebalance(
            name=self.name, servers=self.servers, consumer=self.consumer, processor=processor, commits=commits,
            lookahead=self.lookahead, commit_now=self._commit_now,
            dead_letter=DeadLetterSink(self.servers, self.dead_letter_topic, self.name),
            stores=StoreDir(state_dir(self.settings.state_dir), self.group_id, self.settings.instance_id))
        processor.bind(self)

    # -- lifecycle -----------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to finish its current batch, commit and leave the group."""
        self._stop.set()

    def request_commit(self) -> None:
        """Commit at the end of the current batch rather than keep the transaction open for the next ones (a
        processor whose output someone waits for; call from the loop's own thread, e.g. in ``process``)."""
        self.commits.request()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def ready(self) -> bool:
        """Joined its group and not restoring state (``/readyz``)."""
        rebalance = self.rebalance
        return rebalance.rebalanced and not rebalance.restoring and not self._stop.is_set()

    @property
    def assignment(self) -> list[TopicPartition]:
        """Partitions currently assigned, as last reported by the rebalance callbacks.

        Safe to read from any thread (the consumer's own ``assignment()`` must not be called while
        another thread is inside ``consume``)."""
        return list(self.rebalance.assignment)

    def processed_positions(self, topic: str, partitions: list[int]) -> dict[int, int]:
        """Per partition, the offset up to which every record has been processed: the consumer's position
        (past transaction markers), but never past a record still waiting in the lookahead backlog. The
        watermark gate relies on it (call from the loop's own thread)."""
        if not partitions:
            return {}
        positions = {tp.partition: tp.offset
                     for tp in self.consumer.position([TopicPartition(topic, p) for p in partitions])}
        unknown = [p for p, offset in positions.items() if offset < 0]
        if unknown:
            positions.update(self._committed_fallback(topic, unknown))
        if self.lookahead is not None:
            for (t, p), first in self.lookahead.first_offsets(unprocessed=True).items():
                if t == topic and p in positions:
                    positions[p] = min(positions[p], first) if positions[p] >= 0 else first
        return positions

    def _committed_fallback(self, topic: str, partitions: list[int]) -> dict[int, int]:
        """A partition the consumer has returned no record from since it was assigned has no position yet (an
        idle partition after a restart), and the gate would wait its whole max wait for it. Every record below
        the group's committed offset was processed (by this process, or by the one before it, whose state was
        restored), so that offset stands in. Asked once per assignment (a broker round trip) and kept: an offset
        read earlier is only lower, which can delay the gate but never pass it early."""
        cache = self.rebalance.committed_at_start
        ask = [TopicPartition(topic, p) for p in partitions if (topic, p) not in cache]
        if ask:
            try:
                for tp in self.consumer.committed(ask, timeout=5):
                    if tp.offset >= 0:
                        cache[(topic, tp.partition)] = tp.offset
            except KafkaException as exc:
                log.warning("committed offsets not read for the gate", extra={"error": str(exc)})
        return {p: cache[(topic, p)] for p in partitions if (topic, p) in cache}

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT stop the loop gracefully (only possible from the main thread)."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop())

    def run(self) -> None:
        """Consume, process and commit batches until :meth:`stop`; then close cleanly."""
        metrics.serve(self.settings.metrics_port)
        self.heart.attach()
        commits, rebalance, processor = self.commits, self.rebalance, self.processor
        if self.exactly_once:
            commits.producer.init_transactions(20)
        self.consumer.subscribe(processor.topics(), on_assign=rebalance.on_assign, on_revoke=rebalance.on_revoke,
                                on_lost=rebalance.on_revoke)
        log.info("service started", extra={"service": self.name, "group": self.group_id,
                                           "exactly_once": self.exactly_once, "topics": processor.topics()})
        clean = False
        try:
            while not self._stop.is_set():
                self.heart.beat()
                # Wait for the first record only, then take whatever is already fetched: waiting
                # for a full batch would hold every record for up to poll_timeout per hop.
                # With offsets waiting for their commit, come back in time to commit them.
                timeout = min(self.poll_timeout, commits.offset_commit_interval) if commits.uncommitted \
                    else self.poll_timeout
                if processor.waiting:  # runs wait on the tick (the owner's gate)
                    timeout = min(timeout, 0.002)
                la = self.lookahead
                limit = self.settings.batch_size if la is None else la.room()
                msgs = []
                if limit > 0:
                    msgs = self.consumer.consume(1, timeout=timeout if la is None or not len(la) else 0)
                    if msgs and limit > 1:
                        msgs += self.consumer.consume(limit - 1, timeout=0)
                if rebalance.needs_rebuild:
                    rebalance.rebuild()
                    continue
                started = time.perf_counter()
                try:
                    if la is None:
                        self._run_batch(msgs, caught_up=len(msgs) < self.settings.batch_size)
                    else:
                        early = la.add(msgs, processor.urgent)
                        if early:
                            self._run_early(early, commit=self._worth_early_commit(len(la)))
                        msgs, done = la.take(self.settings.batch_size)
                        self._run_batch(msgs, done, caught_up=len(msgs) < self.settings.batch_size and not len(la))
                except KafkaException as exc:
                    if commits.recover(exc, self.name):
                        rebalance.rebuild()
                    continue
                if msgs:
                    metrics.BATCH_SECONDS.labels(self.name).observe(time.perf_counter() - started)
            clean = True
        finally:
            self._close(clean)

    # -- one batch -----------------------------------------------------------------------------------------

    def _process_one(self, msg: Message) -> int:
        """Process one record; its output is released only if it succeeds, else it is dead-lettered.
        Returns the number of records produced."""
        try:
            self.processor.process(msg, self.emitter)
        except Exception as exc:  # noqa: BLE001 - one bad record never stops the service
            self.emitter.clear()
            self.processor.discard()
            self._dead_letter(msg, exc)
            return 1
        return self.commits.flush_pending()

    def _run_early(self, msgs: Sequence[Message], *, commit: bool) -> None:
        """Process urgent records ahead of the backlog and, if ``commit`` (much work is still ahead of them),
        commit at once; otherwise the batch's own commit, soon, carries them (see lookahead.py)."""
        produced = sum(self._process_one(msg) for msg in msgs)
        metrics.URGENT_RECORDS.labels(self.name).inc(len(msgs))
        if self._commit_urgent:
            # their output is waited for: the batch's end commits it (if not now), not the commit interval
            self.commits.request()
        if commit:
            # The output only: sending offsets is two more round trips to the coordinator (p50 10 ms, up to 50
            # under load) and they can wait for the batch's commit. A crash before it re-processes records
            # whose output is committed, which the run owner and the matcher ignore (see lookahead.py).
            produced += self._commit_now(with_offsets=False)
        if produced:
            metrics.OUTPUTS.labels(self.name).inc(produced)

    def _commit_now(self, *, with_offsets: bool = True) -> int:
        """Commit what has been processed so far, outside the batch rhythm (urgent records; a rebalance with a
        transaction open): the processor's held-back output, and the offsets of the records processed in
        order. Not the consumer's position: records taken from the backlog may not be processed yet, and
        urgent records' offsets are committed when the backlog reaches them. Returns records produced."""
        produced = 0
        if self._ends_batch:
            self.processor.end_batch(self.emitter)
            produced = self.commits.flush_pending()
        self.commits.commit(force=True, advance=False, with_offsets=with_offsets)
        return produced

    def _poll_urgent(self, remaining: int) -> None:
        """In the middle of a batch: take what arrived meanwhile into the backlog, and if any of it is urgent
        (a cancel), apply it now rather than after the rest of the batch."""
        la = self.lookahead
        if la is None or la.room() <= 0:
            return
        early = la.add(self.consumer.consume(la.room(), timeout=0), self.processor.urgent)
        if early:
            self._run_early(early, commit=self._worth_early_commit(remaining))

    def _worth_early_commit(self, remaining: int) -> bool:
        """Whether urgent records just processed should commit now, ahead of ``remaining`` records of work."""
        return self._commit_urgent and remaining * self._record_seconds >= EARLY_COMMIT_SECONDS

    def _run_batch(self, msgs: Sequence[Message], done: set[int] | None = None, *, caught_up: bool = True) -> None:
        """Process a batch in order (``done``: ids of records already processed early, only counted), and commit
        if its commit window is over (``caught_up``: the batch was not full; see :meth:`Committing.due`), else
        leave the transaction open for the next batch."""
        records_by_topic: dict[str, int] = {}
        rebalance, commits = self.rebalance, self.commits
        commits.begin_batch()
        rebalance.revoked_in_batch.clear()
        rebalance.in_batch = True
        try:
            produced = self._run_records(msgs, done, records_by_topic)
        finally:
            rebalance.in_batch = False
        if self._ticks:
            self._tick_collect()
            produced += commits.flush_pending()
        commits.producer.poll(0)  # serve delivery reports once per batch
        if commits.due(caught_up=caught_up or self._stop.is_set()):
            # end_batch once per commit: what it kept back (the owner's run states) commits with the offsets
            # of every batch of the window; no offset commits before it is emitted
            if self._ends_batch:
                self.processor.end_batch(self.emitter)
                produced += commits.flush_pending()
            commits.commit(force=False)
            commits.end_window()
        self.processed += sum(records_by_topic.values())
        for topic, n in records_by_topic.items():
            metrics.RECORDS.labels(self.name, topic).inc(n)
        if produced:
            metrics.OUTPUTS.labels(self.name).inc(produced)

    def _run_records(self, msgs: Sequence[Message], done: set[int] | None, records_by_topic: dict[str, int]) -> int:
        """The records of one batch, in order; returns the number of records produced. With a lookahead, looks
        for newly arrived urgent records every URGENT_LOOK_SECONDS."""
        produced = processed = 0
        offsets = self.commits.uncommitted
        revoked = self.rebalance.revoked_in_batch  # only ever grows (in place) during the batch
        looks = self.lookahead is not None
        started = time.perf_counter()
        next_look = started + URGENT_LOOK_SECONDS
        looking = 0.0  # time in looks (urgent records and their commits), not part of these records' cost
        for i, msg in enumerate(msgs):
            if looks and (now := time.perf_counter()) >= next_look:
                self._poll_urgent(len(msgs) - i)
                after = time.perf_counter()
                looking += after - now
                next_look = after + URGENT_LOOK_SECONDS
            err = msg.error()
            if err is not None:
                # e.g. fenced by a newer member with our group.instance.id: this consumer cannot go on
                if err.fatal() or err.code() == KafkaError._FATAL:
                    raise KafkaException(err)
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer error", extra={"service": self.name, "error": str(err)})
                continue
            topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
            if topic is None or partition is None or offset is None:
                continue  # not a record (a consumer event without an error)
            if revoked and (topic, partition) in revoked:
                continue  # revoked by a rebalance served inside _poll_urgent: its next owner processes it
            offsets[(topic, partition)] = offset + 1
            records_by_topic[topic] = records_by_topic.get(topic, 0) + 1
            if done and id(msg) in done:
                continue
            produced += self._process_one(msg)
            processed += 1
        if looks and processed >= 16:  # too few records say little about the cost of one
            spent = time.perf_counter() - started - looking
            self._record_seconds = 0.8 * self._record_seconds + 0.2 * spent / processed
        return produced

    def _tick_collect(self) -> None:
        """Run the processor's timer hook. A failing tick is logged, not fatal."""
        try:
            self.processor.tick(self.emitter, time.time_ns() // 1_000_000)
        except Exception:
            self.emitter.clear()
            self.processor.discard()
            log.exception("tick failed", extra={"service": self.name})

    def _dead_letter(self, msg: Message, exc: Exception) -> None:
        self.commits.dead_letter(self.dead_letter_topic, self.name, msg, exc)
        self.dead_lettered += 1
        metrics.DEAD_LETTERS.labels(self.name, type(exc).__name__).inc()

    def _close(self, clean: bool = True) -> None:
        """Leave: commit the last batch if the loop stopped as asked (what SIGTERM promises), abort it if the loop
        failed. After a failure the batch's output may be partly dropped while its offsets, and the consumer's
        position past the rest of the batch, are still pending: committing them would lose records."""
        commits = self.commits
        try:
            try:
                if clean:
                    if self._ends_batch:
                        self.processor.end_batch(self.emitter)
                        commits.flush_pending()
                    commits.commit(force=True)
                elif self.exactly_once and commits.in_tx:
                    commits.in_tx = False  # nothing of it may reach the state stores (the revocation commits)
                    if commits.on_abort is not None:
                        commits.on_abort()
                    commits.producer.abort_transaction(10)
            except KafkaException as exc:
                log.warning("final commit failed" if clean else "final abort failed",
                            extra={"service": self.name, "error": str(exc)})
            commits.producer.flush(30)
            if commits.at_once_producer is not commits.producer:
                commits.at_once_producer.flush(30)
            self.processor.close()
        finally:
            self.consumer.close()
            log.info("service stopped", extra={"service": self.name, "processed": self.processed,
                                               "dead_lettered": self.dead_lettered})


def run_in_thread(loop: Any) -> threading.Thread:
    """Start a service loop (or a Worker: anything with ``name`` and ``run``) in a daemon thread."""
    thread = threading.Thread(target=loop.run, name=f"svc-{loop.name}", daemon=True)
    thread.start()
    return thread
