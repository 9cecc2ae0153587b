"""A daemon thread that tails topics from a while back, without a consumer group, and hands each fetch to its
subclass: what the API shows of topics it does not keep a table of (the recent event stream, dropped events).

Without a group, every API instance shows the same thing and a restart refills from the look-back time instead of
resuming where an old group left off; partitions with nothing since then start at their end as read now.
"""

from __future__ import annotations

import logging
import threading
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from ..kafka.client import consume_available, consumer_config

log = logging.getLogger("pipeline.api")


class TopicTail:
    """Tails ``topics`` from ``lookback_ms`` ago on thread ``name``, and no more than ``max_back`` records back per
    partition (None: no cap); :meth:`_take` receives each fetch's records (errors and end-of-partition markers left
    out)."""

    def __init__(self, servers: str, topics: list[str], *, lookback_ms: int, name: str,
                 max_back: int | None = None) -> None:
        self.servers = servers
        self.topics = topics
        self.lookback_ms = lookback_ms
        self.max_back = max_back
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _take(self, msgs: list[Message]) -> None:
        raise NotImplementedError

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
                    log.info("topic tail: waiting for topics", extra={"topics": missing})
                    warned = True
                self._stop.wait(0.5)
        return wanted

    def _start(self, consumer: Consumer, tp: TopicPartition) -> int:
        """Where to read ``tp`` from: its offset at the look-back time (or its end now), but at most ``max_back``
        records before its end."""
        if tp.offset < 0:
            return self._end(consumer, tp)
        if self.max_back is None:
            return int(tp.offset)
        return max(int(tp.offset), self._end(consumer, tp) - self.max_back)

    def _run(self) -> None:
        consumer = Consumer(consumer_config(self.servers, None, read_committed=True))
        try:
            since = int(time.time() * 1000) - self.lookback_ms
            wanted = self._partitions(consumer, since)
            starts = self._starts(consumer, wanted)
            consumer.assign([TopicPartition(tp.topic, tp.partition, self._start(consumer, tp)) for tp in starts])
            while not self._stop.is_set():
                msgs: list[Message] = consume_available(consumer, 500, 0.2)
                good = []
                for msg in msgs:
                    err = msg.error()
                    if err:
                        if err.code() != KafkaError._PARTITION_EOF:
                            log.debug("topic tail read error", extra={"error": str(err)})
                        continue
                    good.append(msg)
                if good:
                    self._take(good)
        except Exception:  # keep the API up: the page just shows nothing new
            log.exception("topic tail thread failed", extra={"topics": self.topics})
        finally:
            consumer.close()
