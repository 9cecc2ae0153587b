"""What a service implements (:class:`Processor`) and where it puts its output (:class:`Emitter`).

Kept apart from the loop that runs processors, so processors and their tests need no Kafka client.
"""

from __future__ import annotations

from typing import Any, Protocol

from confluent_kafka import Message

from ..config import Settings
from ..serde import Serde

Headers = list[tuple[str, bytes]]


class OutputTooLarge(ValueError):
    """A processor produced a record larger than the broker accepts."""


class Emitter:
    """Where a processor puts its output. Sends are buffered per record and released only if it succeeds."""

    __slots__ = ("serde", "_pending", "settings")

    def __init__(self, serde: Serde, settings: Settings) -> None:
        self.serde = serde
        self.settings = settings
        self._pending: list[tuple[str, Any, bytes | None, int, Headers | None]] = []

    def send(self, topic: str, key: str | bytes | None, schema: str | None, value: dict[str, Any] | bytes | None,
             *, partition: int = -1, headers: Headers | None = None) -> None:
        """Queue one output record. ``schema`` names the Avro record type; None sends ``value`` as raw bytes
        (None value = tombstone). Encoding happens here, so a bad output record fails its input record."""
        payload = self.serde.encode(schema, value) if schema is not None and value is not None else value
        if payload is not None and len(payload) > self.settings.max_output_bytes:  # type: ignore[arg-type]
            # Refuse it here, so the *input* is dead-lettered: a record the broker would reject would
            # otherwise abort the transaction on every retry and wedge the partition.
            raise OutputTooLarge(f"output record for {topic} is {len(payload)} bytes "  # type: ignore[arg-type]
                                 f"(limit {self.settings.max_output_bytes})")
        self._pending.append((topic, key, payload, partition, headers))  # type: ignore[arg-type]


class Processor(Protocol):
    """What a service implements. Only ``topics`` and ``process`` are required."""

    name: str

    def topics(self) -> list[str]:
        """Full names of the topics to subscribe to."""
        ...

    def process(self, msg: Message, out: Emitter) -> None:
        """Handle one record; raise to dead-letter it (the message says why)."""
        ...
