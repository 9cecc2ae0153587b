"""Confluent's wire format through a REAL schema registry (Apicurio Registry, built from Maven Central by
pipeline.testing.registry) and the real broker: producers use confluent-kafka's own AvroSerializer.

* an Avro event on the events topic starts a run; a schema id the registry does not have is dead-lettered with
  that reason, its neighbours go on;
* while the registry cannot be reached the record waits (nothing dead-lettered, no run yet) and starts its run
  once the registry answers again;
* a source reading a Confluent-Avro topic maps ``record.value`` as the decoded record.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

import pipeline
from pipeline.serde import EVENT
from pipeline.testing.helpers import await_records
from pipeline.testing.registry import ApicurioRegistry, free_port
from pipeline.testing.stack import Stack

from .apps import app as e2e

# one registry per module and worker (xdist_group would keep them on one worker; pytest 9.2 ignores it)
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("schema-registry")]

EVENT_SCHEMA = json.dumps({
    "type": "record", "name": "ImportRequested", "namespace": "com.example",
    "fields": [{"name": "id", "type": "string"}, {"name": "name", "type": "string"}, {"name": "ts", "type": "long"},
               {"name": "data", "type": {"type": "record", "name": "Data", "fields": [
                   {"name": "importId", "type": "string"}, {"name": "count", "type": "int"}]}}]})
ORDER_SCHEMA = json.dumps({
    "type": "record", "name": "Order", "namespace": "com.example.shop",
    "fields": [{"name": "id", "type": "long"}, {"name": "kind", "type": "string"},
               {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}},
               {"name": "note", "type": ["null", "string"], "default": None}]})

SOURCE_TOPIC = f"avro-orders-{uuid.uuid4().hex[:8]}"
source_app = pipeline.Inngest(app_id="avro-src")
source_app.create_source("avro-orders", topic=SOURCE_TOPIC, name="'shop/order.' + record.value.kind",
                         id="'order-' + string(record.value.id)",
                         data="{'order': record.value.id, 'amount': record.value.amount, 'note': record.value.note}")


@pytest.fixture(scope="module")
def registry() -> Iterator[ApicurioRegistry]:
    with ApicurioRegistry() as running:
        yield running


def _avro_producer(bootstrap: str, registry_url: str, schema: str) -> tuple[Producer, AvroSerializer]:
    client = SchemaRegistryClient({"url": registry_url})
    return Producer({"bootstrap.servers": bootstrap}), AvroSerializer(client, schema)


def _produce(producer: Producer, serializer: AvroSerializer, topic: str, key: str, value: dict[str, object],
             partition: int = 0) -> None:
    payload = serializer(value, SerializationContext(topic, MessageField.VALUE))
    assert payload is not None and payload[:1] == b"\x00"  # Confluent's wire format, schema id from the registry
    producer.produce(topic, key=key, value=payload, partition=partition)
    assert producer.flush(10) == 0


def _import(event_id: str, import_id: str) -> dict[str, object]:
    return {"id": event_id, "name": "test/wild.avro", "ts": int(time.time() * 1000),
            "data": {"importId": import_id, "count": 3}}


def test_a_confluent_avro_event_starts_a_run_and_an_unknown_schema_id_is_dead_lettered(
        kafka_bootstrap: str, registry: ApicurioRegistry) -> None:
    with Stack(e2e, kafka_bootstrap, schema_registry_url=registry.url) as stack:
        events = stack.settings.topic("events")
        producer, serializer = _avro_producer(kafka_bootstrap, registry.url, EVENT_SCHEMA)
        # an id the registry never gave, then a good record behind it on the same partition
        producer.produce(events, key="unknown-id", value=b"\x00" + (987654).to_bytes(4, "big") + b"\x02x",
                         partition=0)
        _produce(producer, serializer, events, "avro-1", _import("avro-1", "imp-7"))
        run = stack.wait_run(lambda r: r["event_id"] == "avro-1" and r["status"] == "Completed")
        (dead,) = await_records(kafka_bootstrap, stack.settings.topic("dead-letter"), 1, timeout=30)
    trigger = json.loads(run["event"])
    assert trigger["name"] == "test/wild.avro"
    assert trigger["data"] == {"importId": "imp-7", "count": 3}
    reason = {k: v.decode() for k, v in dead.headers()}["dlq.reason"]
    assert dead.key() == b"unknown-id"
    assert "schema id 987654 is not in the schema registry" in reason


class _Forwarder:
    """A TCP hop in front of the registry, to cut it off and bring it back (a real outage for the client:
    connection refused while it is down)."""

    def __init__(self, port: int, target: int) -> None:
        self.port, self.target = port, target
        self.server: socket.socket | None = None

    def start(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(16)
        self.server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None


def test_while_the_registry_is_down_the_record_waits_and_starts_its_run_when_it_is_back(
        kafka_bootstrap: str, registry: ApicurioRegistry) -> None:
    hop = _Forwarder(free_port(), registry.port)
    url = f"http://127.0.0.1:{hop.port}{registry.url.split(str(registry.port), 1)[1]}"
    producer, serializer = _avro_producer(kafka_bootstrap, registry.url, EVENT_SCHEMA)
    with Stack(e2e, kafka_bootstrap, schema_registry_url=url) as stack:
        events = stack.settings.topic("events")
        _produce(producer, serializer, events, "avro-down", _import("avro-down", "imp-8"))
        reader = stack.loops["matcher"].processor.confluent
        deadline = time.monotonic() + 30
        while reader.waits < 3:  # it has tried, and is waiting for the registry
            assert time.monotonic() < deadline, "the matcher never tried the registry"
            time.sleep(0.1)
        assert stack.latest_runs() == {}
        assert stack.loops["matcher"].dead_lettered == 0
        hop.start()  # the registry is reachable again
        try:
            run = stack.wait_run(lambda r: r["event_id"] == "avro-down" and r["status"] == "Completed", timeout=60)
        finally:
            hop.stop()
        assert json.loads(run["event"])["data"] == {"importId": "imp-8", "count": 3}
        assert stack.loops["matcher"].dead_lettered == 0


def test_a_source_maps_a_confluent_avro_topic(kafka_bootstrap: str, registry: ApicurioRegistry) -> None:
    from decimal import Decimal

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})  # kept: its futures die with it
    admin.create_topics([NewTopic(SOURCE_TOPIC, 1, 1)])[SOURCE_TOPIC].result(30)
    producer, serializer = _avro_producer(kafka_bootstrap, registry.url, ORDER_SCHEMA)
    orders = [{"id": 1, "kind": "created", "amount": Decimal("12.50"), "note": None},
              {"id": 2, "kind": "paid", "amount": Decimal("12.50"), "note": "card"}]
    for order in orders:
        _produce(producer, serializer, SOURCE_TOPIC, f"o{order['id']}", order)
    producer.produce(SOURCE_TOPIC, key="bad", value=b"\x00" + (987655).to_bytes(4, "big") + b"\x00", partition=0)
    _produce(producer, serializer, SOURCE_TOPIC, "o3", {"id": 3, "kind": "shipped", "amount": Decimal("0.99"),
                                                        "note": None})
    with Stack(source_app, kafka_bootstrap, services=("source",), schema_registry_url=registry.url) as stack:
        copied = await_records(kafka_bootstrap, stack.settings.topic("events"), 3, timeout=60,
                               decode=lambda v: stack.serde.decode_as(EVENT, v))
        (dead,) = await_records(kafka_bootstrap, stack.settings.topic("dead-letter"), 1, timeout=30)
    copied.sort(key=lambda e: str(e["id"]))  # the events topic is keyed by event id: partitions differ
    assert [(e["id"], e["name"]) for e in copied] == [
        ("order-1", "shop/order.created"), ("order-2", "shop/order.paid"), ("order-3", "shop/order.shipped")]
    assert [json.loads(str(e["data"])) for e in copied] == [
        {"order": 1, "amount": "12.50", "note": None}, {"order": 2, "amount": "12.50", "note": "card"},
        {"order": 3, "amount": "0.99", "note": None}]
    headers = {k: v.decode() for k, v in dead.headers()}
    assert headers["dlq.service"] == "source" and "schema id 987655 is not in the schema registry" in \
        headers["dlq.reason"]
