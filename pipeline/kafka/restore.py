"""Rebuild local state from a compacted topic: read assigned partitions from the start to their end.

Services keep tables (runs, listeners) in memory and rebuild them on start and on every
rebalance from the topic that is their changelog, as Kafka Streams does. Progress is shown
with rich on a terminal and logged either way, with how long the rebuild took.
"""

from __future__ import annotations

import ctypes
import logging
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .client import consumer_config
from .deadletter import DeadLetterSink
from .watchdog import beat

log = logging.getLogger("pipeline.restore")


def restore(servers: str, topic: str, partitions: Iterable[int], on_record: Callable[[Message], None],
            *, end_offsets: dict[int, int] | None = None, start_offsets: dict[int, int] | None = None,
            out_of_range: Callable[[int], None] | None = None, reached: dict[int, int] | None = None,
            label: str = "restore",
            batch: int = 2000, dead_letter: DeadLetterSink | None = None) -> tuple[int, float]:
    """Feed every record of ``topic``'s ``partitions`` (from offset 0, or ``start_offsets``, up to the end, or
    ``end_offsets``) to on_record.

    A start offset outside the partition's range (below its first offset, or past its end: a store older than the
    topic's retention, or a topic made anew) is reported to ``out_of_range(partition)``, which must forget what
    it had, and that partition is read from its start. ``reached`` (filled in, if given): per partition, the offset
    the restore read up to (a store's new offset).

    Reads with read_committed, so aborted writes are never restored. A record that ``on_record`` raises on goes
    to ``dead_letter`` and the restore goes on (without a sink it raises: a caller that cannot lose a record says
    so). Returns (records, seconds).
    """
    started = time.monotonic()
    parts = sorted(set(partitions))
    if not parts:
        return 0, 0.0
    extra: dict[str, Any] = {"enable.partition.eof": True, "fetch.wait.max.ms": 10, "fetch.max.bytes": 64 * 1024 * 1024}
    consumer = Consumer(consumer_config(servers, None, **extra))
    count = 0
    try:
        targets: dict[int, int] = {}
        starts: dict[int, int] = {}
        for p in parts:
            low, high = _watermarks(consumer, TopicPartition(topic, p))
            end = high if end_offsets is None or p not in end_offsets else min(end_offsets[p], high)
            start = (start_offsets or {}).get(p, 0)
            if start and not low <= start <= min(high, end):
                log.warning("stored offset out of the changelog's range; restoring in full",
                            extra={"topic": topic, "partition": p, "offset": start, "low": low, "high": high})
                if out_of_range is not None:
                    out_of_range(p)
                start = 0
            start = max(start, low)
            if reached is not None:
                reached[p] = max(end, start)
            if end > start:
                targets[p] = end
                starts[p] = start
        total = sum(targets[p] - starts[p] for p in targets)
        if not targets:
            return 0, time.monotonic() - started
        consumer.assign([TopicPartition(topic, p, starts[p] or OFFSET_BEGINNING) for p in targets])
        pending = set(targets)
        with _progress(label, topic, total) as advance:
            while pending:
                msgs = consumer.consume(batch, timeout=1.0)
                for msg in msgs:
                    err = msg.error()
                    part, offset = msg.partition(), msg.offset()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            if part is not None:
                                pending.discard(part)
                            continue
                        raise RuntimeError(f"restore of {topic}[{part}] failed: {err}")
                    if part is None or offset is None or part not in pending:
                        continue
                    if offset >= targets[part]:
                        pending.discard(part)
                        continue
                    try:
                        on_record(msg)
                    except Exception as exc:
                        if dead_letter is None:
                            raise
                        dead_letter.send(msg, exc)
                    count += 1
                    if offset + 1 >= targets[part]:
                        pending.discard(part)
                advance(len(msgs))
                beat()  # a long restore is progress, not a stall
        if dead_letter is not None:
            dead_letter.flush()
        seconds = time.monotonic() - started
        log.info("state rebuilt", extra={"topic": topic, "partitions": parts, "records": count,
                                         "seconds": round(seconds, 3), "label": label})
        return count, seconds
    finally:
        consumer.close()
        if count >= TRIM_AFTER_RECORDS:
            release_freed_memory()


TRIM_AFTER_RECORDS = 10_000


def release_freed_memory() -> None:
    """Give the heap's free pages back to the system (glibc's ``malloc_trim``; nothing elsewhere).

    Why: a restore of a million records frees most of what it allocated (fetched batches, decoded records, the
    stores' write buffers), but glibc keeps freed memory in its arenas (librdkafka's threads have their own), so
    the service's RSS stayed ~300 MiB above what it uses: 1M canceller listeners took 440 MiB, 1 GiB of
    headroom on a host that runs several services. Costs a few milliseconds, once per restore."""
    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc
        return
    trim(0)


class _progress:
    """A rich progress bar on a terminal, nothing otherwise (logs carry the summary)."""

    def __init__(self, label: str, topic: str, total: int) -> None:
        self.enabled = sys.stderr.isatty() and total > 10000
        self.progress = Progress(TextColumn(f"{label} {topic}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 transient=True) if self.enabled else None
        self.total = total

    def __enter__(self) -> Callable[[int], None]:
        if self.progress is None:
            return lambda n: None
        self.progress.start()
        task = self.progress.add_task("restore", total=self.total)
        return lambda n: self.progress.advance(task, n)  # type: ignore[union-attr]

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()


def _watermarks(consumer: Consumer, tp: TopicPartition, deadline_s: float = 30.0) -> tuple[int, int]:
    """A partition's offsets, retried while the error is transient: a leader moving or just elected answers
    NOT_LEADER_FOR_PARTITION for a moment (seen on brand-new topics), which must not kill the service."""
    give_up = time.monotonic() + deadline_s
    while True:
        try:
            return consumer.get_watermark_offsets(tp, timeout=10)
        except KafkaException as exc:
            error = exc.args[0]
            if not (error.retriable() or error.code() in (KafkaError.NOT_LEADER_FOR_PARTITION,
                                                          KafkaError.LEADER_NOT_AVAILABLE,
                                                          KafkaError.UNKNOWN_TOPIC_OR_PART)) \
                    or time.monotonic() > give_up:
                raise
            log.info("offsets not available yet; retrying", extra={"topic": tp.topic, "partition": tp.partition,
                                                                   "error": str(error)})
            beat()
            time.sleep(0.2)
