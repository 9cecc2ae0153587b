"""Typed reads of a consumed ``confluent_kafka.Message``.

The client types every accessor as optional (``partition()``, ``offset()``, ``topic()`` are None on a message
that was never consumed, ``key()``/``value()`` on a null key or a tombstone). A consumed record always has its
coordinates, so these narrow once, here, and say clearly what was wrong if that ever does not hold, instead
of each caller asserting (or type-ignoring) on its own.
"""

from __future__ import annotations

from confluent_kafka import Message


class NotAConsumedRecord(ValueError):
    """A message without the coordinates every consumed record has (an error event, or a local object)."""


def topic_of(msg: Message) -> str:
    topic = msg.topic()
    if topic is None:
        raise NotAConsumedRecord("message has no topic")
    return topic


def partition_of(msg: Message) -> int:
    partition = msg.partition()
    if partition is None:
        raise NotAConsumedRecord("message has no partition")
    return partition


def offset_of(msg: Message) -> int:
    offset = msg.offset()
    if offset is None:
        raise NotAConsumedRecord("message has no offset")
    return offset


def key_text(msg: Message) -> str | None:
    """The record key as text (keys here are UTF-8 ids), or None for a record without a key."""
    key = msg.key()
    return None if key is None else key.decode()


def header_values(msg: Message) -> list[tuple[str, bytes | None]]:
    """The headers as ``(name, value)`` pairs (the client types them as a list or a dict, with str or bytes
    values; str values are encoded)."""
    headers = msg.headers() or []
    pairs = headers.items() if isinstance(headers, dict) else headers
    return [(name, value.encode() if isinstance(value, str) else value) for name, value in pairs]
