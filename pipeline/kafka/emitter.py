"""Where a service puts its output (:class:`Emitter`); what it implements is
:class:`pipeline.kafka.processor.Processor`.

Kept apart from the loop that runs processors, so processors and their tests need no Kafka client.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..config import Settings
from ..serde import Serde

Headers = list[tuple[str, str | bytes | None]]


class OutputTooLarge(ValueError):
    """A processor produced a record larger than the broker accepts."""


Pending = list[tuple[str, Any, bytes | None, int, Headers | None]]


class Emitter:
    """Where a processor puts its output. Sends are buffered per record and released only if it succeeds."""

    __slots__ = ("_at_once", "_max_bytes", "_pending", "serde", "settings")

    def __init__(self, serde: Serde, settings: Settings) -> None:
        self.serde = serde
        self.settings = settings
        self._max_bytes = settings.max_output_bytes
        self._pending: Pending = []
        self._at_once: Pending = []

    def send(self, topic: str, key: str | bytes | None, schema: str | None, value: Mapping[str, Any] | bytes | None,
             *, partition: int = -1, headers: Headers | None = None, at_once: bool = False) -> None:
        """Queue one output record. ``schema`` names the Avro record type; None sends ``value`` as raw bytes
        (None value = tombstone). Encoding happens here, so a bad output record fails its input record.

        ``at_once``: send it as soon as its input record is processed, outside the batch's transaction, so
        its reader sees it without waiting for the commit (a cancel signal, a cancel command: each commit
        costs 20-60 ms on a loaded broker). Only for records whose reader is idempotent: the loop has them
        acknowledged before it commits the input's offset, so none is lost, but a batch that aborts may
        already have sent them, and its replay sends them again (at least once)."""
        payload: bytes | None
        if value is None or isinstance(value, bytes):
            payload = value
        elif schema is not None:
            payload = self.serde.encode(schema, value)
        else:
            raise TypeError(f"a record for {topic} without a schema must be bytes")
        if payload is not None and len(payload) > self.settings.max_output_bytes:
            # Refuse it here, so the *input* is dead-lettered: a record the broker would reject would
            # otherwise abort the transaction on every retry and wedge the partition.
            raise OutputTooLarge(f"output record for {topic} is {len(payload)} bytes "
                                 f"(limit {self.settings.max_output_bytes})")
        queue = self._at_once if at_once else self._pending
        queue.append((topic, key, payload, partition, headers))

    def send_encoded(self, topic: str, key: str | bytes | None, payload: bytes, partition: int = -1) -> None:
        """:meth:`send` for a record already encoded (no headers, in the transaction): the matcher's start
        commands, ~2.4 per event, where the keyword call and the checks of ``send`` cost as much as the append."""
        if len(payload) > self._max_bytes:
            raise OutputTooLarge(f"output record for {topic} is {len(payload)} bytes (limit {self._max_bytes})")
        self._pending.append((topic, key, payload, partition, None))

    def clear(self) -> None:
        """Drop the output queued so far (its input record failed, or the batch is being aborted)."""
        self._pending.clear()
        self._at_once.clear()
