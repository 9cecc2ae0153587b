"""``pipeline replay group SERVICE``: move a service's consumer-group offsets, as kafka-consumer-groups does.

A plan first (current and target offset per partition, the dry run), then, with ``--execute``, the commit.
Offsets can only move while the group has no live member, so a live group is refused; a service stopped a
moment ago is still a (static) member for its session timeout, so we wait that long for it to leave.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from ..config import Settings
from ..kafka import topics as t
from ..protocol.ids import consumer_group
from .positions import Position

SERVICE_TOPICS: dict[str, tuple[str, ...]] = {
    "matcher": (t.EVENTS, t.SYSTEM_EVENTS), "run-owner": (t.RUN_COMMANDS,), "canceller": (t.CANCEL_INDEX,),
    "worker": (t.INVOCATIONS,),
}


@dataclass(frozen=True)
class Move:
    topic: str
    partition: int
    current: int | None  # None: the group has no committed offset there
    target: int


# Old words for a service, still accepted with a deprecation line (the run owner was called "executor")
RENAMED = {"executor": "run-owner"}


def current_name(service: str) -> tuple[str, str | None]:
    """A service's current name, and a deprecation line when an old one was given."""
    new = RENAMED.get(service)
    if new is None:
        return service, None
    return new, f"'{service}' is deprecated: the service is now called '{new}'"


def group_of(settings: Settings, service: str) -> str:
    if service not in SERVICE_TOPICS:
        raise ValueError(f"unknown service {service!r}: one of {', '.join(SERVICE_TOPICS)}")
    return consumer_group(settings.topic_prefix, service)


def plan(consumer: Consumer, topics: list[str], to: Position) -> list[Move]:
    """Where each partition of ``topics`` is and where ``to`` puts it (a time: the first record at or after it)."""
    moves: list[Move] = []
    for topic in topics:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            raise ValueError(f"topic {topic} does not exist")
        parts = [TopicPartition(topic, p) for p in sorted(meta.partitions)]
        committed = consumer.committed(parts, timeout=10)
        current = {tp.partition: (tp.offset if tp.offset >= 0 else None) for tp in committed}
        if to.time_ms is not None:
            found = consumer.offsets_for_times([TopicPartition(topic, p, to.time_ms) for p in meta.partitions],
                                               timeout=10)
            targets = {}
            for tp in found:
                # no record at or after the time: the end
                targets[tp.partition] = tp.offset if tp.offset >= 0 else \
                    consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=10)[1]
        else:
            targets = {p: o for p in meta.partitions if (o := to.offset_for(p)) is not None}
        for p in sorted(targets):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            moves.append(Move(topic, p, current.get(p), max(low, min(targets[p], high))))
    return moves


def live_members(admin: AdminClient, group_id: str, wait_s: float) -> list[str]:
    """The group's members still there after waiting up to ``wait_s`` for them to leave (empty: free)."""
    deadline = time.monotonic() + wait_s
    while True:
        description = admin.describe_consumer_groups([group_id])[group_id].result(10)
        members = [m.group_instance_id or m.member_id for m in description.members]
        if not members or time.monotonic() > deadline:
            return members
        time.sleep(0.5)


def execute(consumer: Consumer, moves: list[Move]) -> None:
    consumer.commit(offsets=[TopicPartition(m.topic, m.partition, m.target) for m in moves], asynchronous=False)
