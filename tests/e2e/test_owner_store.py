"""The run owner's state store under a real broker: a restarted owner restores only the ``runs`` changelog's tail
(``pipeline_restore_records``), and its sleeping runs still wake (timers from the store's index) and still
cancel."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, TopicPartition

from pipeline.kafka import metrics
from pipeline.kafka import topics as t
from pipeline.testing.stack import Stack

from .apps import app as e2e

pytestmark = pytest.mark.integration
CANCELLED = "inngest/function.cancelled"
FINISHED = "inngest/function.finished"


def _records(servers: str, topic: str, partitions: int) -> int:
    """Offsets of ``topic``'s partitions, together (records plus transaction markers)."""
    consumer = Consumer({"bootstrap.servers": servers, "group.id": "count"})
    try:
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions))
    finally:
        consumer.close()


def test_a_restarted_run_owner_restores_the_tail_only_and_its_runs_wake_and_cancel(kafka_bootstrap: str) -> None:
    runs = 20
    with Stack(e2e, kafka_bootstrap, partitions=2) as stack:
        runs_topic = stack.settings.topic(t.RUNS)
        for i in range(runs):
            stack.send("test/long", {"key": f"k{i}", "sleep": 600}, id=f"L{i}")
        stack.send("test/sleep", {"seconds": 4}, id="S0")
        deadline = time.monotonic() + 60
        while sum(1 for r in stack.latest_runs().values() if r["status"] == "Sleeping") < runs + 1:
            assert time.monotonic() < deadline, "runs did not all fall asleep"
            time.sleep(0.2)
        stack.stop_service("run-owner")
        written = _records(kafka_bootstrap, runs_topic, 2)
        assert written > 2 * runs

        stack.start_service("run-owner")
        deadline = time.monotonic() + 30
        while not stack.loops["run-owner"].ready:
            assert time.monotonic() < deadline, "the run owner never became ready"
            time.sleep(0.1)
        restored = metrics.RESTORE_RECORDS.labels("run-owner", runs_topic)._value.get()
        assert restored == 0, f"a clean restart re-read {restored} of {written} records"

        # the short sleeper's timer came back from the store and wakes it; every long one still cancels
        stack.wait_system_event(FINISHED, lambda e: e["data"]["event"]["id"] == "S0", timeout=30)
        for i in range(runs):
            stack.send("test/cancel", {"key": f"k{i}"}, id=f"C{i}")
        stack.wait_system_event(CANCELLED, timeout=60, count=runs)
        time.sleep(2)
        cancelled = stack.system_events_named(CANCELLED)
    assert sorted(e["data"]["event"]["id"] for e in cancelled) == sorted(f"L{i}" for i in range(runs))
