"""Topics from their specs, Avro records through a real broker (incl. schema evolution), and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from io import BytesIO
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource
from fastavro import schemaless_writer

from pipeline.config import Settings
from pipeline.kafka import topics as t
from pipeline.serde import EVENT, Serde, default_catalog
from pipeline.serde.avro import MAGIC
from pipeline.serde.models import Event
from pipeline.testing.helpers import await_records, create_topic, unique_name

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _settings(bootstrap: str) -> Settings:
    return Settings(bootstrap_servers=bootstrap, topic_prefix=unique_name("tp") + ".")


def test_create_is_idempotent_and_runs_is_compacted(kafka_bootstrap: str) -> None:
    settings = _settings(kafka_bootstrap)
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    first = t.create_topics(admin, settings)
    assert {r.action for r in first} == {"created"}
    assert {r.topic for r in first} == {settings.topic(s.name) for s in t.SPECS}
    second = t.create_topics(admin, settings)
    assert {r.action for r in second} == {"exists"}
    runs = t.describe_config(admin, settings.topic(t.RUNS))
    assert runs["cleanup.policy"] == "compact"
    assert t.describe_config(admin, settings.topic(t.CANCEL_INDEX))["cleanup.policy"] == "compact"
    assert t.describe_config(admin, settings.topic(t.EVENTS))["message.timestamp.type"] == "LogAppendTime"
    assert t.partition_count(admin, settings.topic(t.RUNS)) == t.partition_count(admin, settings.topic(t.RUN_COMMANDS))


def test_create_reports_drift(kafka_bootstrap: str) -> None:
    settings = _settings(kafka_bootstrap)
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    t.create_topics(admin, settings)
    res = ConfigResource(ConfigResource.Type.TOPIC, settings.topic(t.RUNS), incremental_configs=[
        ConfigEntry("cleanup.policy", "delete", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([res])[res].result()
    deadline = time.monotonic() + 15
    while t.describe_config(admin, settings.topic(t.RUNS))["cleanup.policy"] != "delete":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    reports = {r.topic: r for r in t.create_topics(admin, settings)}
    drifted = reports[settings.topic(t.RUNS)]
    assert drifted.action == "drift"
    assert drifted.drift == ["cleanup.policy: delete (spec compact)"]


def test_avro_event_round_trip_through_kafka(kafka_bootstrap: str) -> None:
    topic = unique_name("avro")
    create_topic(kafka_bootstrap, topic)
    serde = Serde()
    event = Event(name="contacts/import.requested", data={"importId": "x", "n": [1, 2.5, None, {"deep": True}]},
                  user={"id": "u"}).with_defaults()
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(topic, key=event.id, value=serde.encode(EVENT, event.to_record()))
    assert producer.flush(10) == 0
    (back,) = await_records(kafka_bootstrap, topic, 1, decode=lambda v: Event.from_record(serde.decode_as(EVENT, v)))
    assert back == event


def test_record_written_with_old_schema_is_read_with_the_new_one_through_kafka(kafka_bootstrap: str) -> None:
    topic = unique_name("evolve")
    create_topic(kafka_bootstrap, topic)
    old = next(e for e in default_catalog().by_fingerprint.values() if e.name == EVENT and not e.current)
    buf = BytesIO()
    buf.write(MAGIC + old.fingerprint)
    schemaless_writer(buf, old.parsed, {"id": "old-1", "name": "legacy/event", "data": '{"a": 1}', "ts": 42})
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(topic, value=buf.getvalue())
    assert producer.flush(10) == 0
    (record,) = await_records(kafka_bootstrap, topic, 1, decode=lambda v: Serde().decode_as(EVENT, v))
    assert record == {"id": "old-1", "name": "legacy/event", "data": '{"a": 1}', "user": "{}", "ts": 42, "v": None}


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env}, timeout=120)


def test_cli_topics_send_and_tail(kafka_bootstrap: str) -> None:
    env = {"PIPELINE_BOOTSTRAP_SERVERS": kafka_bootstrap, "PIPELINE_TOPIC_PREFIX": unique_name("cli") + "."}
    created = _cli("topics", "create", env=env)
    assert created.returncode == 0, created.stderr
    assert "created" in created.stdout
    described = _cli("topics", "describe", env=env)
    assert described.returncode == 0 and "compact" in described.stdout
    sent = _cli("send", "contacts/import.requested", "--data", '{"importId": "abc"}', env=env)
    assert sent.returncode == 0, sent.stderr
    event_id = sent.stdout.strip()
    assert len(event_id) == 26
    bad = _cli("send", "x", "--data", "{nope", env=env)
    assert bad.returncode == 2 and "not valid JSON" in bad.stderr
    tailed = _cli("tail", "events", "--from-beginning", "--max", "1", "--timeout", "20", env=env)
    assert tailed.returncode == 0, tailed.stderr
    (line,) = tailed.stdout.strip().splitlines()
    record = json.loads(line)
    assert record["key"] == event_id
    assert record["value"]["name"] == "contacts/import.requested"
    assert record["value"]["data"] == {"importId": "abc"}
    assert record["value"]["_schema"] == "pipeline.Event"
