"""``pipeline replay topic SRC --to DST``: re-publish a range of records, optionally filtered, exactly once.

The range is ``--from`` (a time or ``p:o``) up to ``--until`` (exclusive; default: the end now). ``--name``
(a glob on the event name) and ``--where`` (CEL over ``event``) select event records. Each run of the same job
(same arguments) is one consumer group: copies and the group's offsets commit in one transaction, so a replay
stopped halfway resumes where it stopped and copies nothing twice. ``--dry-run`` counts per partition.
"""

from __future__ import annotations

import fnmatch
import hashlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from ..expr import compile_expr
from ..kafka.client import consumer_config, producer_config
from ..kafka.messages import header_values, offset_of, partition_of
from ..serde import Serde, SerdeError
from ..serde.events import ConfluentReader, read_event
from ..serde.models import event_record_to_dict
from .positions import Position


@dataclass(frozen=True)
class Job:
    src: str
    dst: str
    start: Position
    until: Position | None
    where: str | None = None
    name: str | None = None

    @property
    def group(self) -> str:
        """The job's consumer group: the same arguments resume the same job."""
        text = repr((self.src, self.dst, self.start, self.until, self.where, self.name))
        return "pipeline-replay-" + hashlib.sha1(text.encode()).hexdigest()[:16]


def selector(where: str | None, name: str | None,
             confluent: ConfluentReader | None = None) -> Callable[[Message], bool]:
    """Which records to copy: all, or the events whose name matches the glob and for which ``where`` holds.
    ``confluent`` decodes Confluent-Avro events; while its registry is down it raises (the job stops and resumes
    when run again) rather than leave good records out."""
    if where is None and name is None:
        return lambda msg: True
    expr = compile_expr(where, ("event",)) if where else None  # ExprError names a bad expression up front
    serde = Serde()

    def keep(msg: Message) -> bool:
        try:
            event = event_record_to_dict(read_event(serde, msg.value(), msg.timestamp()[1], confluent))
        except (SerdeError, TypeError, ValueError):
            return False  # not an event: a filter cannot hold for it
        if name is not None and not fnmatch.fnmatchcase(event["name"], name):
            return False
        return expr is None or expr.evaluate({"event": event})

    return keep


def bounds(consumer: Consumer, job: Job) -> dict[int, tuple[int, int]]:
    """Per partition of the source: [first offset, end offset) of the range."""
    meta = consumer.list_topics(job.src, timeout=10).topics.get(job.src)
    if meta is None or meta.error is not None:
        raise ValueError(f"topic {job.src} does not exist")
    out: dict[int, tuple[int, int]] = {}
    for p in sorted(meta.partitions):
        low, high = consumer.get_watermark_offsets(TopicPartition(job.src, p), timeout=10)
        first = _offset(consumer, job.src, p, job.start, low, high, default=None)
        end = high if job.until is None else _offset(consumer, job.src, p, job.until, low, high, default=high)
        if first is not None and end is not None and first < end:
            out[p] = (max(first, low), min(end, high))
    return out


def _offset(consumer: Consumer, topic: str, p: int, pos: Position, low: int, high: int,
            default: int | None) -> int | None:
    if pos.time_ms is not None:
        found: int = consumer.offsets_for_times([TopicPartition(topic, p, pos.time_ms)], timeout=10)[0].offset
        return found if found >= 0 else high
    given = pos.offset_for(p)
    return default if given is None else max(low, min(given, high))


def _consumer(servers: str, group: str) -> Consumer:
    extra: dict[str, Any] = {"enable.partition.eof": True, "enable.auto.commit": False}
    return Consumer(consumer_config(servers, group, read_committed=True, **extra))


def dry_run(servers: str, job: Job, confluent: ConfluentReader | None = None) -> dict[int, tuple[int, int]]:
    """Per partition: (records in the range, records the filters select)."""
    consumer = _consumer(servers, f"{job.group}-dry-{uuid.uuid4().hex[:6]}")
    keep = selector(job.where, job.name, confluent)
    counts: dict[int, list[int]] = {}
    try:
        for msg in _read(consumer, job.src, bounds(consumer, job)):
            c = counts.setdefault(partition_of(msg), [0, 0])
            c[0] += 1
            c[1] += keep(msg)
    finally:
        consumer.close()
    return {p: (c[0], c[1]) for p, c in sorted(counts.items())}


def _read(consumer: Consumer, topic: str, ranges: dict[int, tuple[int, int]],
          batch: int = 500) -> Iterator[Message]:
    todo = {p: r for p, r in ranges.items() if r[0] < r[1]}
    if not todo:
        return
    consumer.assign([TopicPartition(topic, p, r[0]) for p, r in todo.items()])
    while todo:
        for msg in consumer.consume(batch, timeout=1.0):
            p = partition_of(msg)
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    todo.pop(p, None)
                    continue
                raise RuntimeError(str(error))
            offset = offset_of(msg)
            if p not in todo or offset >= todo[p][1]:
                todo.pop(p, None)
                continue
            yield msg
            if offset + 1 >= todo[p][1]:
                todo.pop(p, None)


def run(servers: str, job: Job, on_batch: Callable[[int, int], None] = lambda read, copied: None,
        stop: Callable[[], bool] = lambda: False, batch: int = 500,
        confluent: ConfluentReader | None = None) -> tuple[int, int]:
    """Copy the selected records of the range not copied by an earlier run of the job; (read, copied)."""
    consumer = _consumer(servers, job.group)
    producer = Producer(producer_config(servers, transactional_id=f"{job.group}-{uuid.uuid4().hex[:6]}"))
    producer.init_transactions(30)
    keep = selector(job.where, job.name, confluent)
    read = copied = 0
    try:
        ranges = bounds(consumer, job)
        done = consumer.committed([TopicPartition(job.src, p) for p in ranges], timeout=10)
        for tp in done:  # resume after what an earlier run of this job committed
            if tp.offset >= 0:
                first, end = ranges[tp.partition]
                ranges[tp.partition] = (max(first, tp.offset), end)
        pending: dict[int, int] = {}
        producer.begin_transaction()
        in_batch = 0
        for msg in _read(consumer, job.src, ranges, batch):
            read += 1
            in_batch += 1
            if keep(msg):
                headers: list[tuple[str, str | bytes | None]] = list(header_values(msg))
                headers.append(("replay.source", f"{job.src}[{msg.partition()}]@{msg.offset()}".encode()))
                producer.produce(job.dst, key=msg.key(), value=msg.value(), headers=headers)
                copied += 1
            pending[partition_of(msg)] = offset_of(msg) + 1
            if in_batch >= batch:
                _commit(producer, consumer, job.src, pending)
                on_batch(read, copied)
                in_batch = 0
                if stop():
                    return read, copied
                producer.begin_transaction()
        _commit(producer, consumer, job.src, pending)
        on_batch(read, copied)
        return read, copied
    finally:
        consumer.close()


def _commit(producer: Producer, consumer: Consumer, topic: str, pending: dict[int, int]) -> None:
    if pending:
        producer.send_offsets_to_transaction([TopicPartition(topic, p, o) for p, o in pending.items()],
                                             consumer.consumer_group_metadata(), 30)
    producer.commit_transaction(30)


def remaining(servers: str, job: Job) -> int:
    """Records of the range this job has not read yet (for the progress bar's total)."""
    consumer = _consumer(servers, job.group)
    try:
        ranges = bounds(consumer, job)
        total = 0
        for tp in consumer.committed([TopicPartition(job.src, p) for p in ranges], timeout=10):
            first, end = ranges[tp.partition]
            total += end - max(first, tp.offset if tp.offset >= 0 else first)
        return total
    finally:
        consumer.close()
