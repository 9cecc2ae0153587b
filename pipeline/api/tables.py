"""In-memory tables that the HTTP API reads, each fed by one compacted topic.

The API never asks the services for run state: the compacted ``runs`` topic is the source of
truth, so the API tails it (all partitions, from the beginning, no consumer group,
read_committed) into a dict, the way every other service rebuilds its tables. The same holds
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
from collections.abc import Callable
from typing import Any, TypeVar

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

from ..kafka.client import consume_available, consumer_config
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

    # -- the thread ----------------------------------------------------------------------------------------

    def _run(self) -> None:
        extra: dict[str, Any] = {"enable.partition.eof": True, "client.id": f"pipeline-api-{self.name}"}
        consumer = Consumer(consumer_config(self.servers, None, **extra))
        try:
            partitions = self._wait_for_topic(consumer)
            if partitions is None:
                return
            started = time.monotonic()
            targets = self._end_offsets(consumer, partitions)
            if targets is None:
                return
            pending = set(targets)
            consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in partitions])
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

    def _end_offsets(self, consumer: Consumer, partitions: list[int]) -> dict[int, int] | None:
        """The end offset of each non-empty partition, retried while leaders are still being elected.

        A topic created a moment ago answers NOT_LEADER_FOR_PARTITION for a while; that is a
        reason to wait, not to fail the table.
        """
        delay = 0.1
        while not self._stop.is_set():
            try:
                targets: dict[int, int] = {}
                for p in partitions:
                    low, high = consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10)
                    if high > max(low, 0):
                        targets[p] = high
                return targets
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
    """run_id → RunState dict, event_id → run ids, and per-bulk-cancellation counts of cancelled runs.

    The counts are kept incrementally (each state change moves a run in or out of a count), so
    listing cancellations costs nothing however many runs there are.
    """

    def __init__(self, servers: str, topic: str, *, serde: Serde | None = None) -> None:
        super().__init__(servers, topic, name="runs", serde=serde)
        self.runs: dict[str, dict[str, Any]] = {}
        self.by_event: dict[str, list[str]] = {}
        self.bulk_counts: dict[str, int] = {}
        self.partitions: dict[str, int] = {}
        self.index = RunIndex()  # sorted views for paging (the dev UI)

    def apply(self, key: str, value: bytes | None, partition: int) -> None:
        old = self.runs.get(key)
        if value is None:
            if old is not None:
                del self.runs[key]
                self.partitions.pop(key, None)
                self._unindex(key, old)
                self.index.remove(old)
            return
        state = self.serde.decode_as(RUN_STATE, value)
        if old is not None and old.get("version", 0) > state.get("version", 0):
            return  # an older state (e.g. a zombie writer's) never overwrites a newer one
        if old is not None:
            self.index.remove(old)
        self.index.add(state)
        self.runs[key] = state
        self.partitions[key] = partition  # the run owner's partition: commands for the run go there
        if old is None or old["event_id"] != state["event_id"]:
            if old is not None:
                self._unindex(key, old, count=False)
            self.by_event.setdefault(state["event_id"], []).append(key)
        before, after = _bulk_source(old), _bulk_source(state)
        if before != after:
            if before is not None:
                self._dec(before)
            if after is not None:
                self.bulk_counts[after] = self.bulk_counts.get(after, 0) + 1

    def _unindex(self, run_id: str, old: dict[str, Any], count: bool = True) -> None:
        ids = self.by_event.get(old["event_id"])
        if ids is not None:
            try:
                ids.remove(run_id)
            except ValueError:
                pass
            if not ids:
                del self.by_event[old["event_id"]]
        source = _bulk_source(old)
        if count and source is not None:
            self._dec(source)

    def _dec(self, source: str) -> None:
        left = self.bulk_counts.get(source, 0) - 1
        if left > 0:
            self.bulk_counts[source] = left
        else:
            self.bulk_counts.pop(source, None)

    # -- reads (take the lock; the dicts change under the table thread) -------------------------------------

    def get(self, run_id: str) -> dict[str, Any] | None:
        with self._cond:
            return self.runs.get(run_id)

    def for_event(self, event_id: str) -> list[dict[str, Any]]:
        """The runs an event started, oldest id first (run ids are ULIDs)."""
        with self._cond:
            return [self.runs[r] for r in sorted(self.by_event.get(event_id, ())) if r in self.runs]

    def page(self, function_id: str | None, status: str | None, **options: Any) -> tuple[list[dict[str, Any]], Any]:
        """A page of runs, newest first (see :meth:`RunIndex.page`)."""
        with self._cond:
            ids, cursor = self.index.page(function_id, status, **options)
            return [self.runs[r] for r in ids if r in self.runs], cursor

    def function_counts(self) -> dict[str, int]:
        with self._cond:
            return dict(self.index.functions)

    def cancelled_by(self, cancellation_id: str) -> int:
        with self._cond:
            return self.bulk_counts.get(cancellation_id, 0)


class CancellationTable(CompactedTable):
    """Bulk cancellation id → BulkCancellation dict, from the one-partition ``cancellations`` topic."""

    def __init__(self, servers: str, topic: str, *, serde: Serde | None = None) -> None:
        super().__init__(servers, topic, name="cancellations", serde=serde)
        self.records: dict[str, dict[str, Any]] = {}

    def apply(self, key: str, value: bytes | None, partition: int) -> None:
        if value is None:
            self.records.pop(key, None)
            return
        self.records[key] = self.serde.decode_as(BULK_CANCELLATION, value)

    def get(self, cancellation_id: str) -> dict[str, Any] | None:
        with self._cond:
            return self.records.get(cancellation_id)

    def all(self) -> list[dict[str, Any]]:
        """Every cancellation, newest first (ids are ULIDs, so their order is creation order)."""
        with self._cond:
            return [self.records[k] for k in sorted(self.records, reverse=True)]
