"""The last events seen on ``events`` and ``system-events``, for the dev UI's event stream.

A bounded ring (newest first): the UI shows recent traffic, not history (``pipeline tail`` and replay are for
that). A daemon thread tails both topics from a short while back. It keeps the records as they came (value,
time, which topic) and decodes only the ones a page asks for: under a burst of events most records leave the
ring before anyone looks, and decoding each one cost the API's event loop more than serving the burst.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from ..kafka.client import consume_available, consumer_config
from ..serde import Serde, SerdeError
from ..serde.events import ConfluentReader, read_event
from ..serde.models import event_record_to_dict
from ..serde.registry import RegistryUnavailable

log = logging.getLogger("pipeline.api")


class RecentEvents:
    """A ring of the newest ``keep`` events across ``topics`` (the last one is the system events topic).

    It reads without a consumer group from ``lookback_ms`` ago, so every API instance shows the same stream
    and a restart refills the ring instead of resuming where an old group left off."""

    def __init__(self, servers: str, topics: list[str], *, keep: int = 500, lookback_ms: int = 3_600_000,
                 confluent: ConfluentReader | None = None) -> None:
        self.servers = servers
        self.confluent = confluent  # Confluent-Avro events; one that cannot be decoded now is left out
        self.topics = topics
        self.keep = keep
        # (Avro value, received at ms, from the system events topic), oldest first
        self.events: collections.deque[tuple[bytes, int, bool]] = collections.deque(maxlen=keep)
        self.serde = Serde()
        self.lookback_ms = lookback_ms
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="api-recent-events", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

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

    def _starts(self, consumer: Consumer, wanted: list[TopicPartition]) -> list[TopicPartition]:
        """Offsets at the look-back time, retried while a new topic's leaders settle (NOT_LEADER...)."""
        while wanted and not self._stop.is_set():
            try:
                return consumer.offsets_for_times(wanted, timeout=10)
            except KafkaException as exc:
                if not exc.args[0].retriable() and exc.args[0].code() != KafkaError.NOT_LEADER_FOR_PARTITION:
                    raise
                time.sleep(0.5)
        return []

    @staticmethod
    def _end(consumer: Consumer, tp: TopicPartition) -> int:
        """No record since the look-back time: start at the partition's end *now*, as an offset. The logical end
        (-1) is resolved only when fetching starts, so events written in between were skipped for good."""
        try:
            return int(consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=10)[1])
        except KafkaException:
            return -1

    def _partitions(self, consumer: Consumer, since: int) -> list[TopicPartition]:
        """Every partition of the topics, waiting for a topic that is not there yet (just created, or before
        ``pipeline topics create``): one missing at start was left out for good, and its events never shown."""
        wanted: list[TopicPartition] = []
        missing = list(self.topics)
        warned = False
        while missing and not self._stop.is_set():
            for topic in list(missing):
                try:
                    meta = consumer.list_topics(topic, timeout=5).topics.get(topic)
                except KafkaException:
                    meta = None
                if meta is not None and meta.error is None and meta.partitions:
                    wanted += [TopicPartition(topic, p, since) for p in sorted(meta.partitions)]
                    missing.remove(topic)
            if missing:
                if not warned:
                    log.info("recent events: waiting for topics", extra={"topics": missing})
                    warned = True
                self._stop.wait(0.5)
        return wanted

    def _run(self) -> None:
        consumer = Consumer(consumer_config(self.servers, None, read_committed=True))
        try:
            since = int(time.time() * 1000) - self.lookback_ms
            wanted = self._partitions(consumer, since)
            starts = self._starts(consumer, wanted)
            consumer.assign([TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else
                                            self._end(consumer, tp)) for tp in starts])
            system_topic = self.topics[-1]
            while not self._stop.is_set():
                msgs: list[Message] = consume_available(consumer, 500, 0.2)
                if not msgs:
                    continue
                batch: list[tuple[bytes, int, bool]] = []
                for msg in msgs[-self.keep:]:  # older ones would leave the ring at once
                    err = msg.error()
                    if err:
                        if err.code() != KafkaError._PARTITION_EOF:
                            log.debug("recent events read error", extra={"error": str(err)})
                        continue
                    value = msg.value()
                    if value is None:  # a tombstone: events are never deleted, so nothing to show
                        continue
                    batch.append((value, msg.timestamp()[1], msg.topic() == system_topic))
                with self._lock:
                    self.events.extend(batch)
        except Exception:  # keep the API up: the stream page just shows nothing new
            log.exception("recent events thread failed")
        finally:
            consumer.close()
