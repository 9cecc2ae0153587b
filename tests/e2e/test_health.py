"""Every ``pipeline run SERVICE`` serves /healthz, /readyz and /metrics on PIPELINE_HEALTH_PORT, and /readyz
flips to 200 only after the service has joined its group and restored its state (real broker, processes)."""

from __future__ import annotations

import time

import httpx
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from pipeline.kafka import topics as t
from pipeline.testing.helpers import free_port
from pipeline.testing.stack import Stack

from .apps import app
from .procs import service_process

pytestmark = pytest.mark.integration


# The changelog each stateful service rebuilds its table from when partitions are assigned.
STATE_TOPIC = {"matcher": t.EVENT_IDS, "run-owner": t.RUNS, "canceller": t.CANCEL_INDEX}


def fill_changelog(servers: str, topic: str, n: int = 200_000) -> None:
    """Enough tombstones that the restore takes a while (each is read and applied), so "not ready" lasts long
    enough for the probe to see it, however fast the group join is: without state, a service could join and
    be ready between two probes, and the test would depend on timing."""
    producer = Producer({"bootstrap.servers": servers, "linger.ms": 20, "batch.num.messages": 10000})
    for i in range(n):
        while True:
            try:
                producer.produce(topic, key=f"gone-{i}".encode(), value=None)
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(60) == 0


def commit_to_end(servers: str, group: str, topic: str) -> None:
    """The canceller restores its index only up to its group's committed offsets (what it had processed):
    commit the end of the filled changelog for its group, as a canceller that had read it all would have."""
    consumer = Consumer({"bootstrap.servers": servers, "group.id": group, "enable.auto.commit": False})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = [TopicPartition(topic, p, consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1])
                for p in parts]
        consumer.commit(offsets=ends, asynchronous=False)
    finally:
        consumer.close()


@pytest.mark.parametrize("service", ["matcher", "run-owner", "canceller", "worker"])
def test_readyz_flips_after_restore(kafka_bootstrap: str, service: str) -> None:
    with Stack(app, kafka_bootstrap, services=()) as stack:
        if service in STATE_TOPIC:
            fill_changelog(kafka_bootstrap, stack.settings.topic(STATE_TOPIC[service]))
        if service == "canceller":
            commit_to_end(kafka_bootstrap, f"{stack.settings.topic_prefix}pipeline-canceller",
                          stack.settings.topic(t.CANCEL_INDEX))
        port = free_port()
        proc = service_process(stack, service, f"health-{service}", PIPELINE_HEALTH_PORT=str(port))
        seen: list[int] = []
        try:
            deadline = time.monotonic() + 60
            while not seen or seen[-1] != 200:
                assert time.monotonic() < deadline, f"{service} never became ready: {seen[-5:]}"
                assert proc.poll() is None, f"{service} exited with {proc.returncode}"
                try:
                    seen.append(httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code)
                except httpx.TransportError:
                    pass  # not listening yet
                time.sleep(0.05)
            if service != "worker":  # a worker has no state to restore: it may be ready at its first answer
                assert 503 in seen, seen  # it said "not ready" before its group and restore were done
            alive = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
            assert alive.status_code == 200 and service in alive.json()["services"]
            ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).json()
            assert ready["services"][service]["ok"]
            exposition = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            assert "pipeline_" in exposition
            if service in STATE_TOPIC:  # it was ready only after reading the whole changelog
                restored = [float(line.rsplit(" ", 1)[1]) for line in exposition.splitlines()
                            if line.startswith("pipeline_restore_records{")]
                assert sum(restored) >= 200_000, restored
        finally:
            proc.terminate()
            assert proc.wait(40) == 0  # SIGTERM: a clean stop
