"""Tables that the HTTP API reads, each fed by one compacted topic.

The API never asks the services for run state: the compacted ``runs`` topic is the source of
truth, so the API tails it (all partitions, no consumer group, read_committed) into a state store on
disk (:class:`RunTable`: read from the positions stored with it, so a restart reads only the tail). The same holds
for bulk cancellations on the one-partition ``cancellations`` topic. A tombstone (null value)
deletes a key.

A table is *ready* once it has read every partition up to the end offsets it saw when it
started (or hit the partition's end, which under read_committed is the last stable offset,
so an open transaction cannot hold readiness back forever). Request handlers poll
:meth:`CompactedTable.applied` (on the event loop) to wait for the table to catch up with writes
that happened just before, instead of answering from a stale view; :meth:`CompactedTable.wait_until`
blocks a thread for the same purpose.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

from ..kafka.client import consume_available, consumer_config
from ..kafka.store import Store
from ..serde import BULK_CANCELLATION, RUN_STATE, Serde, SerdeError
from .run_index import RunIndex

log = logging.getLogger("pipeline.api.tables")

T = TypeVar("T")


class CompactedTable:
    """A background thread that keeps a dict in step with a compacted topic.

    Subclasses implement :meth:`apply` (called under the table lock, in offset order per partition).
    """

    def __init__(self, servers: str, topic: str, *, name: str, serde: Serde | None = None,
                 poll_timeout: float = 0.1) -> None:
        self.servers = servers
        self.topic = topic
        self.name = name
        self.serde = serde or Serde()
        self.poll_timeout = poll_timeout
        self.ready = threading.Event()
        self.records_read = 0
        self.decode_errors = 0
        self.restore_seconds: float | None = None
        self.error: str | None = None
        self._cond = threading.Condition()
        self._positions: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start tailing the topic in a daemon thread (returns at once; watch :attr:`ready`)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name=f"table-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread and close the consumer (leaves no group: the table never joins one)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    # -- waiting -------------------------------------------------------------------------------------------

    def wait_ready(self, timeout: float) -> bool:
        """Block until the initial catch-up is done or ``timeout`` passes; returns readiness."""
        return self.ready.wait(timeout)

    def wait_until(self, predicate: Callable[[], T], timeout: float) -> T:
        """Re-evaluate ``predicate`` (under the table lock) after every applied batch until truthy or timeout.

        Returns the last value of the predicate, so a caller can fetch and test in one step.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = predicate()
                left = deadline - time.monotonic()
                if value or left <= 0 or self._stop.is_set():
                    return value
                self._cond.wait(min(left, 0.25))

    def applied(self, partition: int, offset: int) -> bool:
        """Whether the record at ``offset`` of ``partition`` has been applied (non-blocking; read-your-writes)."""
        return self._positions.get(partition, 0) > offset

    # -- to implement --------------------------------------------------------------------------------------

    def apply(self, key: str, value: bytes | None, partition: int) -> None:  # pragma: no cover - abstract
        """Apply one record (``value`` None = tombstone). Called with the lock held."""
        raise NotImplementedError

    def stored_positions(self) -> dict[int, int]:
        """Per partition, the offset the table already holds everything before (a table kept on disk); the
        table reads from there. None of them: from the beginning."""
        return {}

    def forget_all(self) -> None:
        """The stored positions are outside the topic's range (a topic made anew): forget the table."""

    def cluster(self, cluster_id: str | None) -> None:
        """The Kafka cluster the topic is read from (a table kept on disk forgets one read from another)."""

    def batch_applied(self) -> None:
        """A batch of records is applied and ``_positions`` moved past it (called with the lock held)."""

    # -- the thread ----------------------------------------------------------------------------------------

    def _run(self) -> None:
        extra: dict[str, Any] = {"enable.partition.eof": True, "client.id": f"pipeline-api-{self.name}"}
        consumer = Consumer(consumer_config(self.servers, None, **extra))
        try:
            partitions = self._wait_for_topic(consumer)
            if partitions is None:
                return
            started = time.monotonic()
            self.cluster(consumer.list_topics(timeout=10).cluster_id)
            ranges = self._end_offsets(consumer, partitions)
            if ranges is None:
                return
            starts = self._starts(ranges)
            targets = {p: high for p, (_, high) in ranges.items() if high > starts.get(p, 0)}
            pending = set(targets)
            consumer.assign([TopicPartition(self.topic, p, starts.get(p) or OFFSET_BEGINNING) for p in partitions])
            if not pending:
                self._mark_ready(started)
            while not self._stop.is_set():
                msgs: list[Message] = consume_available(consumer, 500, self.poll_timeout)
                if not msgs:
                    continue
                with self._cond:
                    for msg in msgs:
                        err = msg.error()
                        p, offset = msg.partition(), msg.offset()
                        if err is not None:
                            if err.code() == KafkaError._PARTITION_EOF:
                                if p is not None:
                                    pending.discard(p)
                            else:
                                log.warning("table read error", extra={"table": self.name, "error": str(err)})
                            continue
                        self._apply_message(msg)
                        if p is None or offset is None:  # a record read from a partition always has both
                            continue
                        self._positions[p] = offset + 1
                        if p in pending and offset + 1 >= targets[p]:
                            pending.discard(p)
                    self.batch_applied()
                    self._cond.notify_all()
                if not pending and not self.ready.is_set():
                    self._mark_ready(started)
        except Exception as exc:  # keep the API up (503s) and say why, rather than dying silently
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("table thread failed", extra={"table": self.name})
        finally:
            consumer.close()
            with self._cond:
                self._cond.notify_all()

    def _wait_for_topic(self, consumer: Consumer) -> list[int] | None:
        """The topic's partitions; waits (logging once) while it does not exist yet, e.g. before topics create."""
        warned = False
        while not self._stop.is_set():
            try:
                meta = consumer.list_topics(self.topic, timeout=5).topics.get(self.topic)
            except Exception as exc:  # noqa: BLE001 - whatever stops the lookup (broker away, not up yet), wait
                meta, reason = None, str(exc)
            else:
                reason = str(meta.error) if meta is not None and meta.error is not None else "no partitions"
            if meta is not None and meta.error is None and meta.partitions:
                return sorted(meta.partitions)
            if not warned:
                log.warning("waiting for topic (run `pipeline topics create`)",
                            extra={"table": self.name, "topic": self.topic, "reason": reason})
                warned = True
            self._stop.wait(1.0)
        return None

    def _starts(self, ranges: dict[int, tuple[int, int]]) -> dict[int, int]:
        """Where to read each partition from: the stored positions, unless one is outside its partition's range
        (then the table is forgotten and read from the beginning)."""
        stored = self.stored_positions()
        if any(not ranges.get(p, (0, 0))[0] <= offset <= ranges.get(p, (0, 0))[1] for p, offset in stored.items()):
            log.warning("stored table outside the topic's range; reading it in full",
                        extra={"table": self.name, "topic": self.topic})
            self.forget_all()
            stored = {}
        with self._cond:
            self._positions.update(stored)
        return stored

    def _end_offsets(self, consumer: Consumer, partitions: list[int]) -> dict[int, tuple[int, int]] | None:
        """The (first, end) offsets of each partition, retried while leaders are still being elected.

        A topic created a moment ago answers NOT_LEADER_FOR_PARTITION for a while; that is a
        reason to wait, not to fail the table.
        """
        delay = 0.1
        while not self._stop.is_set():
            try:
                ranges: dict[int, tuple[int, int]] = {}
                for p in partitions:
                    ranges[p] = consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10)
                return ranges
            except KafkaException as exc:
                log.info("end offsets not available yet, retrying",
                         extra={"table": self.name, "topic": self.topic, "error": str(exc)})
                self._stop.wait(delay)
                delay = min(delay * 2, 2.0)
        return None

    def _apply_message(self, msg: Message) -> None:
        raw_key, partition = msg.key(), msg.partition()
        if raw_key is None or partition is None:  # a record read from a partition always has one
            self.decode_errors += 1
            return
        try:
            self.apply(raw_key.decode("utf-8", "replace"), msg.value(), partition)
            self.records_read += 1
        except (SerdeError, KeyError, ValueError, TypeError) as exc:
            self.decode_errors += 1
            log.warning("undecodable record skipped", extra={
                "table": self.name, "partition": msg.partition(), "offset": msg.offset(), "error": str(exc)})

    def _mark_ready(self, started: float) -> None:
        self.restore_seconds = time.monotonic() - started
        self.ready.set()
        log.info("table ready", extra={"table": self.name, "topic": self.topic, "records": self.records_read,
                                       "seconds": round(self.restore_seconds, 3)})


def _bulk_source(state: dict[str, Any] | None) -> str | None:
    """The bulk cancellation that cancelled this run, if one did."""
    if state and state.get("status") == "Cancelled" and state.get("cancel_reason") == "bulk":
        return state.get("cancel_source")
    return None


class RunTable(CompactedTable):
    """run_id → RunState dict, event_id → run ids, and per-bulk-cancellation counts of cancelled runs, in a state
    store on disk (:mod:`pipeline.kafka.store`) with the position read up to in each partition, so a restarted
    API reads only what ``runs`` gained since, and a million runs cost disk, not memory.

    Keys: ``r<run id>`` → the run owner's partition (4 bytes) and the state's Avro bytes as read; ``e<event id>\\0
    <run id>``; ``b<cancellation id>`` → count; ``p<partition>`` → position; and the paging views
    (:class:`~.run_index.RunIndex`). Each batch read is written to the store in one ``WriteBatch`` with its
    positions. The counts are kept incrementally (each state change moves a run in or out of a count), so
    listing cancellations costs nothing however many runs there are.
    """

    def __init__(self, servers: str, topic: str, *, store: Store, serde: Serde | None = None) -> None:
        super().__init__(servers, topic, name="runs", serde=serde)
        self.store = store
        self.index = RunIndex(store)  # sorted views for paging (the dev UI)
        self.partitions = _Partitions(self)
        # run id -> the fields of its stored state that applying its next state reads (``_SUMMARY``), for
        # the runs read lately: a run's states come a few at a time (started, asleep, cancelled...), and without
        # it each one decoded the stored state before it in full (half of the table thread's decoding)
        self._recent: OrderedDict[str, dict[str, Any]] = OrderedDict()

    # -- the store ------------------------------------------------------------------------------------------

    def stored_positions(self) -> dict[int, int]:
        return {int.from_bytes(k[1:], "big"): int.from_bytes(v, "big")
                for k, v in self.store.scan(_POSITION, _POSITION + b"\xff")}

    def forget_all(self) -> None:
        with self._cond:
            self._recent.clear()
            self.store.wipe()

    def cluster(self, cluster_id: str | None) -> None:
        with self._cond:
            self.store.check_origin(cluster_id)

    def batch_applied(self) -> None:
        for p, offset in self._positions.items():
            self.store.put(_POSITION + p.to_bytes(4, "big"), offset.to_bytes(8, "big"))
        self.store.commit()

    def _read(self, run_id: str) -> tuple[int, dict[str, Any]] | None:
        raw = self.store.get(_RUN + run_id.encode())
        if raw is None:
            return None
        return int.from_bytes(raw[:4], "big"), self.serde.decode_as(RUN_STATE, raw[4:])

    # -- applying records -----------------------------------------------------------------------------------

    def _previous(self, run_id: str) -> dict[str, Any] | None:
        """What :meth:`apply` needs of the run's stored state (its summary), taken out of the recent ones:
        :meth:`apply` puts it back once the new state is applied in full, so a record that fails midway leaves
        none behind that could disagree with the store."""
        old = self._recent.pop(run_id, None)
        if old is not None:
            return old
        raw = self.store.get(_RUN + run_id.encode())
        return None if raw is None else self.serde.decode_fields(RUN_STATE, raw[4:], _SUMMARY)

    def _remember(self, run_id: str, summary: dict[str, Any]) -> None:
        recent = self._recent
        recent[run_id] = summary
        if len(recent) > RECENT_RUNS:
            recent.popitem(last=False)

    def apply(self, key: str, value: bytes | None, partition: int) -> None:
        old = self._previous(key)
        store = self.store
        if value is None:
            if old is not None:
                store.delete(_RUN + key.encode())
                self._unindex(key, old)
                self.index.remove(old)
            return
        # only the fields the indexes read: the stored value is the record as read, decoded in full by the reads
        state = self.serde.decode_fields(RUN_STATE, value, _SUMMARY)
        if old is not None and old.get("version", 0) > state.get("version", 0):
            self._remember(key, old)
            return  # an older state (e.g. a zombie writer's) never overwrites a newer one
        if old is None:
            self.index.add(state)
        else:
            self.index.move(old, state)
        # the run owner's partition: commands for the run go there
        store.put(_RUN + key.encode(), partition.to_bytes(4, "big") + value)
        if old is None or old["event_id"] != state["event_id"]:
            if old is not None:
                self._unindex(key, old, count=False)
            store.put(_EVENT + state["event_id"].encode() + b"\x00" + key.encode(), b"")
        before, after = _bulk_source(old), _bulk_source(state)
        if before != after:
            if before is not None:
                self._add_bulk(before, -1)
            if after is not None:
                self._add_bulk(after, 1)
        self._remember(key, state)

    def _unindex(self, run_id: str, old: dict[str, Any], count: bool = True) -> None:
        self.store.delete(_EVENT + old["event_id"].encode() + b"\x00" + run_id.encode())
        source = _bulk_source(old)
        if count and source is not None:
            self._add_bulk(source, -1)

    def _add_bulk(self, source: str, delta: int) -> None:
        key = _BULK + source.encode()
        raw = self.store.get(key)
        n = (int.from_bytes(raw, "big") if raw else 0) + delta
        if n > 0:
            self.store.put(key, n.to_bytes(8, "big"))
        else:
            self.store.delete(key)

    # -- reads (take the lock; the store's open writes change under the table thread) -----------------------

    def get(self, run_id: str) -> dict[str, Any] | None:
        with self._cond:
            found = self._read(run_id)
        return None if found is None else found[1]

    def partition_of(self, run_id: str) -> int | None:
        with self._cond:
            found = self._read(run_id)
        return None if found is None else found[0]

    def for_event(self, event_id: str) -> list[dict[str, Any]]:
        """The runs an event started, oldest id first (run ids are ULIDs)."""
        prefix = _EVENT + event_id.encode() + b"\x00"
        with self._cond:
            ids = [k[len(prefix):].decode() for k, _ in self.store.scan(prefix, prefix[:-1] + b"\x01")]
            found = [self._read(r) for r in sorted(ids)]
        return [f[1] for f in found if f is not None]

    def page(self, function_id: str | None, status: str | None, **options: Any) -> tuple[list[dict[str, Any]], Any]:
        """A page of runs, newest first (see :meth:`RunIndex.page`)."""
        with self._cond:
            ids, cursor = self.index.page(function_id, status, **options)
            found = [self._read(r) for r in ids]
        return [f[1] for f in found if f is not None], cursor

    def function_counts(self) -> dict[str, int]:
        with self._cond:
            return self.index.functions

    def cancelled_by(self, cancellation_id: str) -> int:
        with self._cond:
            raw = self.store.get(_BULK + cancellation_id.encode())
        return int.from_bytes(raw, "big") if raw else 0

    def stop(self, timeout: float = 10.0) -> None:
        super().stop(timeout)
        with self._cond:
            self._recent.clear()
            self.store.close()


_RUN, _EVENT, _BULK, _POSITION = b"r", b"e", b"b", b"p"
RECENT_RUNS = 20_000  # summaries of the runs applied lately (a few hundred bytes each)
# the fields of a state that applying the run's next state reads: the version, the run index's, the event
# index's and the bulk count's
_SUMMARY = ("run_id", "version", "function_id", "status", "queued_at", "event_id", "cancel_reason", "cancel_source")



class _Partitions:
    """``table.partitions[run_id]``: the run owner's partition of a run (KeyError if the table has no such run)."""

    def __init__(self, table: RunTable) -> None:
        self.table = table

    def __getitem__(self, run_id: str) -> int:
        p = self.table.partition_of(run_id)
        if p is None:
            raise KeyError(run_id)
        return p

    def get(self, run_id: str, default: int | None = None) -> int | None:
        p = self.table.partition_of(run_id)
        return default if p is None else p


class RecordTable(CompactedTable):
    """Key → the latest record of one schema (a tombstone forgets the key)."""

    def __init__(self, servers: str, topic: str, *, name: str, schema: str, serde: Serde | None = None) -> None:
        super().__init__(servers, topic, name=name, serde=serde)
        self.schema = schema
        self.records: dict[str, dict[str, Any]] = {}

    def apply(self, key: str, value: bytes | None, partition: int) -> None:
        if value is None:
            self.records.pop(key, None)
            return
        self.records[key] = self.serde.decode_as(self.schema, value)


class CancellationTable(RecordTable):
    """Bulk cancellation id → BulkCancellation dict, from the one-partition ``cancellations`` topic."""

    def __init__(self, servers: str, topic: str, *, serde: Serde | None = None) -> None:
        super().__init__(servers, topic, name="cancellations", schema=BULK_CANCELLATION, serde=serde)

    def get(self, cancellation_id: str) -> dict[str, Any] | None:
        with self._cond:
            return self.records.get(cancellation_id)

    def all(self) -> list[dict[str, Any]]:
        """Every cancellation, newest first (ids are ULIDs, so their order is creation order)."""
        with self._cond:
            return [self.records[k] for k in sorted(self.records, reverse=True)]
