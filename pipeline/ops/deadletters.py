"""``pipeline dlq``: read, show and re-publish dead letters.

A dead letter keeps the original key, value and headers, plus ``dlq.*`` headers saying why and where it came
from (:mod:`pipeline.kafka.deadletter`). ``replay`` re-publishes a record to its source topic after a fix, each
record **once**: the re-publish and a marker keyed by the dead letter's ``partition:offset`` (on the compacted
``dead-letter-replayed`` topic) commit in one transaction, and records already marked are skipped, whatever
filters earlier replays used.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, Producer, TopicPartition

from ..kafka.client import consume_available, consumer_config, producer_config
from ..kafka.messages import header_values, key_text, offset_of, partition_of


@dataclass(frozen=True)
class DeadLetter:
    """One dead-letter record and what its headers say."""

    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str] = field(default_factory=dict)
    raw_headers: tuple[tuple[str, bytes | None], ...] = ()

    @property
    def id(self) -> str:
        return f"{self.partition}:{self.offset}"

    @property
    def reason(self) -> str:
        return self.headers.get("dlq.reason", "")

    @property
    def source(self) -> str:
        return self.headers.get("dlq.source.topic", "")

    @property
    def where(self) -> str:
        h = self.headers
        topic, partition, offset = (h.get(f"dlq.source.{k}", "?") for k in ("topic", "partition", "offset"))
        return f"{topic}[{partition}]@{offset}"


def _dead_letter(msg: Message) -> DeadLetter:
    raw = tuple(header_values(msg))
    headers = {k: (v.decode("utf-8", "replace") if v is not None else "") for k, v in raw}
    return DeadLetter(partition_of(msg), offset_of(msg), msg.timestamp()[1], msg.key(), msg.value(), headers, raw)


def read_all(servers: str, topic: str) -> Iterator[Message]:
    """Every committed record of ``topic`` now, partition by partition up to its current end."""
    eof: dict[str, Any] = {"enable.partition.eof": True}
    consumer = Consumer(consumer_config(servers, None, **eof))
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            raise ValueError(f"topic {topic} does not exist")
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in meta.partitions}
        todo = {p for p, (low, high) in ends.items() if high > low}
        if not todo:
            return
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in todo])
        while todo:
            for msg in consume_available(consumer, 500, 1.0):
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        todo.discard(msg.partition())
                        continue
                    raise RuntimeError(str(msg.error()))
                yield msg
                if msg.offset() + 1 >= ends[msg.partition()][1]:
                    todo.discard(msg.partition())
    finally:
        consumer.close()


def matches(reason: str | None, source: str | None) -> Callable[[DeadLetter], bool]:
    """A filter: ``reason`` is a case-insensitive substring of the reason, ``source`` the unprefixed or full
    source topic name (or its suffix)."""
    def check(d: DeadLetter) -> bool:
        if reason and reason.lower() not in d.reason.lower():
            return False
        return not source or d.source == source or d.source.endswith("." + source) or d.source.endswith(source)
    return check


def listing(servers: str, topic: str, keep: Callable[[DeadLetter], bool]) -> list[DeadLetter]:
    """The dead letters that ``keep`` accepts, in (partition, offset) order."""
    found = [_dead_letter(m) for m in read_all(servers, topic)]
    return sorted((d for d in found if keep(d)), key=lambda d: (d.partition, d.offset))


def find(letters: list[DeadLetter], ref: str) -> DeadLetter | None:
    """A dead letter by its id ``p:o``, or by its row number ``N`` (1-based) in the unfiltered listing."""
    if ":" in ref:
        return next((d for d in letters if d.id == ref), None)
    if ref.isdigit() and 1 <= int(ref) <= len(letters):
        return letters[int(ref) - 1]
    return None


def replayed_ids(servers: str, marker_topic: str) -> set[str]:
    """Dead letters already re-published (their ``p:o`` ids)."""
    done: set[str] = set()
    for msg in read_all(servers, marker_topic):
        key = key_text(msg) or ""
        if msg.value() is None:
            done.discard(key)
        else:
            done.add(key)
    return done


def replay(servers: str, letters: list[DeadLetter], marker_topic: str, done: set[str],
           on_each: Callable[[DeadLetter, str], None] = lambda d, what: None) -> tuple[int, int]:
    """Re-publish each letter not in ``done`` to its source topic (original key, value and headers, plus
    ``dlq.replayed.from``), with its marker, one transaction per record. Returns (replayed, skipped)."""
    producer = Producer(producer_config(servers, transactional_id=f"pipeline-dlq-replay-{uuid.uuid4().hex[:8]}"))
    producer.init_transactions(30)
    sent = skipped = 0
    try:
        for d in letters:
            if d.id in done or not d.source:
                skipped += 1
                on_each(d, "skipped")
                continue
            headers: list[tuple[str, str | bytes | None]] = [
                (k, v) for k, v in d.raw_headers if not k.startswith("dlq.")]
            headers.append(("dlq.replayed.from", d.id.encode()))
            producer.begin_transaction()
            producer.produce(d.source, key=d.key, value=d.value, headers=headers)
            producer.produce(marker_topic, key=d.id.encode(), value=d.where.encode())
            producer.commit_transaction(30)
            done.add(d.id)
            sent += 1
            on_each(d, "replayed")
    finally:
        producer.flush(10)
    return sent, skipped
