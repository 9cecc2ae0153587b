"""The broker ends a waiting read-committed fetch when a transaction commits, not only when new bytes come.

``consumer_config`` sets ``fetch.wait.max.ms`` on that premise (an idle consumer asks every 50 ms, not every
10 ms): if a commit marker did not wake a waiting fetch, every transactional hop of the pipeline would
cost up to that long. This holds the broker to it with a wait long enough (2 s) that a missed wake-up shows.
"""

from __future__ import annotations

import statistics
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from pipeline.kafka.client import consumer_config, producer_config
from pipeline.testing.helpers import create_topic, unique_name

pytestmark = pytest.mark.integration

LONG_WAIT_MS = 2000


def _consume_one(consumer: Consumer) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for msg in consumer.consume(1, timeout=1.0):
            if msg.error() is None:
                return
    raise AssertionError("nothing consumed in 10 s")


def test_a_commit_marker_ends_a_waiting_read_committed_fetch(kafka_bootstrap: str) -> None:
    topic = unique_name("wake")
    create_topic(kafka_bootstrap, topic, partitions=3)
    producer = Producer(producer_config(kafka_bootstrap, transactional_id=unique_name("wake-tx"),
                                        **{"linger.ms": 0}))
    producer.init_transactions(20)
    consumer = Consumer(consumer_config(kafka_bootstrap, unique_name("wake-g"), read_committed=True,
                                        **{"fetch.wait.max.ms": LONG_WAIT_MS}))
    try:
        consumer.assign([TopicPartition(topic, p, -1) for p in range(3)])  # -1: the end
        consumer.consume(10, timeout=2.0)  # the fetch sessions are set up and waiting
        latencies = []
        for i in range(8):
            time.sleep(0.3)  # past the first fetch's set-up, in the middle of a waiting one
            producer.begin_transaction()
            producer.produce(topic, key=str(i).encode(), value=b"v", partition=i % 3)
            assert producer.flush(10) == 0  # written, not yet committed: invisible to this consumer
            assert consumer.consume(1, timeout=0.05) == []
            producer.commit_transaction(20)
            committed = time.perf_counter()
            _consume_one(consumer)
            latencies.append((time.perf_counter() - committed) * 1000)
    finally:
        consumer.close()
    # A missed wake-up costs the rest of the 2 s wait: uniform over 0-2000 ms. Woken, it is a few ms.
    assert statistics.median(latencies) < 200, latencies
    assert max(latencies) < LONG_WAIT_MS / 2, latencies
