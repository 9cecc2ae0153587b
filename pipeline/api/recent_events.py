"""The last events seen on ``events`` and ``system-events``, for the dev UI's event stream.

A bounded ring (newest first): the UI shows recent traffic, not history (``pipeline tail`` and replay are for
that). A daemon thread tails both topics from a short while back. It keeps the records as they came (value,
time, which topic) and decodes only the ones a page asks for: under a burst of events most records leave the
ring before anyone looks, and decoding each one cost the API's event loop more than serving the burst.
"""

from __future__ import annotations

import collections
import threading
from typing import Any

from confluent_kafka import Message

from ..serde import Serde, SerdeError
from ..serde.events import ConfluentReader, read_event
from ..serde.models import event_record_to_dict
from ..serde.registry import RegistryUnavailable
from .tail import TopicTail


class RecentEvents(TopicTail):
    """A ring of the newest ``keep`` events across ``topics`` (the last one is the system events topic).

    It reads without a consumer group from ``lookback_ms`` ago (:class:`~pipeline.api.tail.TopicTail`), so every
    API instance shows the same stream and a restart refills the ring."""

    def __init__(self, servers: str, topics: list[str], *, keep: int = 500, lookback_ms: int = 3_600_000,
                 confluent: ConfluentReader | None = None) -> None:
        super().__init__(servers, topics, lookback_ms=lookback_ms, name="api-recent-events")
        self.confluent = confluent  # Confluent-Avro events; one that cannot be decoded now is left out
        self.keep = keep
        # (Avro value, received at ms, from the system events topic), oldest first
        self.events: collections.deque[tuple[bytes, int, bool]] = collections.deque(maxlen=keep)
        self.serde = Serde()
        self._lock = threading.Lock()

    def latest(self, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` events, newest first by the time the broker received them, decoded now (a record
        that does not decode is left out)."""
        with self._lock:
            raw = list(self.events)
        # read order is per partition: a fetch from the system topic can land before an older one from events
        raw.sort(key=lambda entry: entry[1])
        out: list[dict[str, Any]] = []
        for value, received_at, system in reversed(raw):
            try:
                event = event_record_to_dict(read_event(self.serde, value, received_at, self.confluent))
            except (SerdeError, TypeError, ValueError, RegistryUnavailable):
                continue
            event["received_at"] = received_at
            event["system"] = system
            out.append(event)
            if len(out) >= limit:
                break
        return out

    def _take(self, msgs: list[Message]) -> None:
        system_topic = self.topics[-1]
        batch: list[tuple[bytes, int, bool]] = []
        for msg in msgs[-self.keep:]:  # older ones would leave the ring at once
            value = msg.value()
            if value is None:  # a tombstone: events are never deleted, so nothing to show
                continue
            batch.append((value, msg.timestamp()[1], msg.topic() == system_topic))
        with self._lock:
            self.events.extend(batch)
