"""Sources on the real broker: a user's topic copied to events exactly once, through SIGKILLs, and a record whose
mapping fails dead-lettered with the CEL error while its neighbours go on."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from fastapi.testclient import TestClient

import pipeline
from pipeline.api.app import create_app
from pipeline.kafka.client import consume_available
from pipeline.sdk.app import Registry
from pipeline.serde import EVENT, Serde
from pipeline.testing.helpers import await_records
from pipeline.testing.stack import Stack

from .apps import app as e2e
from .procs import service_process

pytestmark = pytest.mark.integration


@contextlib.contextmanager
def _sources_api(stack: Stack, topic: str) -> Iterator[TestClient]:
    """The HTTP API serving an app with the same source as tests/e2e/source_app.py (its /v1/sources)."""
    client = pipeline.Inngest(app_id="src")
    client.create_source("orders", topic=topic, name="'shop/order.' + record.value.kind",
                         data="{'order': record.value.id, 'key': record.key}")
    with TestClient(create_app(stack.settings, registry=Registry([client]))) as api:
        yield api


def _lag(api: TestClient) -> int:
    """The source's lag; None (the broker did not answer in time: a loaded machine) is asked again."""
    deadline = time.monotonic() + 60
    while True:
        (source,) = api.get("/v1/sources").json()["data"]
        assert source["id"] == "orders"
        if source["lag"] is not None:
            return int(source["lag"])
        assert time.monotonic() < deadline, "the lag could not be read for 60 s"
        time.sleep(0.5)


def _create_topic(bootstrap: str, name: str) -> None:
    """The user's own topic (the broker creates no topic by itself)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, 3, 1)])[name].result(30)


class _Output:
    """Counts what the source has written so far, committed or not (read_uncommitted), to kill it mid-copy."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"peek-{uuid.uuid4().hex}",
                                  "auto.offset.reset": "earliest", "isolation.level": "read_uncommitted",
                                  "enable.auto.commit": False})
        self.consumer.subscribe([topic])
        self.count = 0

    def wait_for(self, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.count < n:
            assert time.monotonic() < deadline, f"the source wrote {self.count} of {n} records"
            self.count += sum(m.error() is None for m in consume_available(self.consumer, 1000, 0.05))

    def close(self) -> None:
        self.consumer.close()


def _events(bootstrap: str, topic: str, expect: int, timeout: float) -> list[dict[str, object]]:
    """Every committed event on ``topic`` once ``expect`` are there (read_committed), and any more that come in
    the next second: a duplicate would show as an extra record."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "isolation.level": "read_committed",
                         "enable.auto.commit": False})
    consumer.subscribe([topic])
    serde, out = Serde(), []
    deadline = time.monotonic() + timeout
    settle: float | None = None
    try:
        while True:
            for msg in consume_available(consumer, 1000, 0.2):
                if msg.error() is None:
                    out.append(serde.decode_as(EVENT, msg.value()))
            now = time.monotonic()
            if len(out) >= expect and settle is None:
                settle = now + 1.0
            if settle is not None and now > settle:
                return out
            assert now < deadline, f"{len(out)} of {expect} events within {timeout}s"
    finally:
        consumer.close()


def test_a_source_copies_each_record_exactly_once_through_two_sigkills(kafka_bootstrap: str) -> None:
    total = 1000
    with Stack(e2e, kafka_bootstrap, services=()) as stack:
        source_topic = f"{stack.settings.topic_prefix}user-orders"
        _create_topic(kafka_bootstrap, source_topic)
        producer = Producer({"bootstrap.servers": kafka_bootstrap})

        def produce() -> None:  # spread over ~4 s, so that the kills land mid-stream
            for i in range(total):
                producer.produce(source_topic, key=f"k{i}", value=json.dumps({"kind": "created", "id": i}).encode())
                if i % 50 == 49:
                    producer.flush(10)
                    time.sleep(0.2)
            assert producer.flush(10) == 0

        writer = threading.Thread(target=produce)
        writer.start()
        env = {"SOURCE_TOPIC": source_topic}
        events = stack.settings.topic("events")
        seen = _Output(kafka_bootstrap, events)
        for kill in range(2):
            proc = service_process(stack, "source", f"src-{kill}", app="tests.e2e.source_app:app", **env)
            seen.wait_for(150 * (kill + 1), timeout=60)  # copying (written, maybe not committed yet): kill it now
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        seen.close()
        writer.join()
        with _sources_api(stack, source_topic) as api:
            assert _lag(api) > 0  # the killed instances left records to copy
            proc = service_process(stack, "source", "src-last", app="tests.e2e.source_app:app", **env)
            try:
                copied = _events(kafka_bootstrap, events, total, timeout=90)
                assert _lag(api) == 0
            finally:
                proc.terminate()
                proc.wait(30)
    orders = sorted(json.loads(str(e["data"]))["order"] for e in copied)
    assert orders == list(range(total))  # every record once: none lost, none doubled
    assert len({e["id"] for e in copied}) == total
    assert {e["name"] for e in copied} == {"shop/order.created"}


def test_a_record_whose_mapping_fails_is_dead_lettered_with_the_cel_error(kafka_bootstrap: str) -> None:
    with Stack(e2e, kafka_bootstrap, services=()) as stack:
        source_topic = f"{stack.settings.topic_prefix}user-orders"
        _create_topic(kafka_bootstrap, source_topic)
        producer = Producer({"bootstrap.servers": kafka_bootstrap})
        values = [{"kind": "created", "id": 1}, {"id": 2}, {"kind": "paid", "id": 3}]  # the 2nd has no kind
        for value in values:
            producer.produce(source_topic, key="same", value=json.dumps(value).encode(), partition=0)
        assert producer.flush(10) == 0
        proc = service_process(stack, "source", "src-dlq", app="tests.e2e.source_app:app",
                               SOURCE_TOPIC=source_topic)
        try:
            copied = _events(kafka_bootstrap, stack.settings.topic("events"), 2, timeout=60)
            (dead,) = await_records(kafka_bootstrap, stack.settings.topic("dead-letter"), 1, timeout=30)
        finally:
            proc.terminate()
            proc.wait(30)
    assert sorted(e["name"] for e in copied) == ["shop/order.created", "shop/order.paid"]
    headers = {k: v.decode() for k, v in dead.headers()}
    assert headers["dlq.service"] == "source" and headers["dlq.source.topic"] == source_topic
    assert "record.value.kind" in headers["dlq.reason"] and "kind" in headers["dlq.reason"]
    assert json.loads(dead.value()) == {"id": 2}
