"""Events from any producer: a JSON object in Inngest's event shape on the events topic is an event, exactly like
one sent through the API (deduplicated by id; without an id, one derived from the record's coordinates, so a
replay starts nothing twice)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

from examples.newsletter import app as newsletter
from pipeline.testing.stack import Stack

from .apps import app as e2e

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
CANCELLED = "inngest/function.cancelled"


def _produce_json(bootstrap: str, topic: str, *events: dict[str, object], key: str | None = None) -> None:
    """A plain producer with no project code: JSON text values, as any Kafka client writes them."""
    producer = Producer({"bootstrap.servers": bootstrap})
    for event in events:
        producer.produce(topic, key=key, value=json.dumps(event).encode())
    assert producer.flush(10) == 0


def test_a_json_import_starts_the_seed_run_and_a_json_cancel_cancels_it(kafka_bootstrap: str) -> None:
    with Stack(newsletter, kafka_bootstrap) as stack:
        events = stack.settings.topic("events")
        _produce_json(kafka_bootstrap, events, {"id": "json-import-1", "name": "contacts/import.requested",
                                                "data": {"importId": "json-1"}, "ts": int(time.time() * 1000)},
                      key="json-import-1")
        run = stack.wait_run(lambda r: r["status"] == "Sleeping")
        trigger = json.loads(run["event"])
        assert trigger["id"] == "json-import-1" and trigger["data"] == {"importId": "json-1"}
        _produce_json(kafka_bootstrap, events, {"name": "contacts/import.cancelled", "data": {"importId": "json-1"}})
        (cancelled,) = stack.wait_system_event(CANCELLED)
        assert cancelled["data"]["run_id"] == run["run_id"]
        stack.wait_run(lambda r: r["function_id"] == "newsletter-app-cleanup-cancelled-import"
                       and r["status"] == "Completed")
        # the same JSON event again (a producer's retry): deduplicated by id, no second run
        _produce_json(kafka_bootstrap, events, {"id": "json-import-1", "name": "contacts/import.requested",
                                                "data": {"importId": "json-1"}})
        stack.send("contacts/unrelated", {}, id="after-dup")  # a marker behind it: the matcher got that far
        deadline = time.monotonic() + 20
        while stack.loops["matcher"].processed < 4:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        imports = [r for r in stack.latest_runs().values() if r["function_id"] == "newsletter-app-import-all-contacts"]
        assert len(imports) == 1


def test_a_json_event_without_id_starts_one_run_also_after_the_matcher_is_rewound(kafka_bootstrap: str) -> None:
    with Stack(e2e, kafka_bootstrap) as stack:
        events = stack.settings.topic("events")
        _produce_json(kafka_bootstrap, events, {"name": "test/wild.json", "data": {"n": 1}})
        first = stack.wait_run(lambda r: r["status"] == "Completed")
        trigger = json.loads(first["event"])
        assert len(trigger["id"]) == 26 and trigger["ts"] > 0  # derived from the record, ts from the broker
        stack.stop_service("matcher")
        moved = subprocess.run([sys.executable, "-m", "pipeline.cli", "replay", "group", "matcher", "--to-offset",
                                "0", "--topic", "events", "--execute"], cwd=ROOT, env=stack.env(),
                               capture_output=True, text=True, timeout=60)
        assert moved.returncode == 0, moved.stderr
        matcher = stack.start_service("matcher")
        deadline = time.monotonic() + 30
        while matcher.processed < 1:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(1)
        runs = stack.latest_runs()
        assert list(runs) == [first["run_id"]]
        assert json.loads(runs[first["run_id"]]["event"])["id"] == trigger["id"]


def test_bad_json_on_the_events_topic_is_dead_lettered_with_what_was_expected(kafka_bootstrap: str) -> None:
    from pipeline.testing.helpers import await_records

    with Stack(e2e, kafka_bootstrap) as stack:
        events = stack.settings.topic("events")
        producer = Producer({"bootstrap.servers": kafka_bootstrap})
        bad = {
            "truncated": b'{"name": "test/wild.x", "data": {',
            "no-name": b'{"data": {"a": 1}}',
            "data-not-object": b'{"name": "test/wild.x", "data": [1, 2]}',
            "array": b"[1, 2, 3]",
            "text": b"hello world",
            "confluent": b"\x00\x00\x00\x00\x07\x02x",
        }
        for key, value in bad.items():
            producer.produce(events, key=key, value=value, partition=0)
        assert producer.flush(10) == 0
        stack.send("test/wild.ok", {}, id="good", partition=0)
        stack.wait_run(lambda r: r["event_id"] == "good" and r["status"] == "Completed")
        dead = await_records(kafka_bootstrap, stack.settings.topic("dead-letter"), len(bad), timeout=20)
    reasons = {m.key().decode(): dict((k, v.decode()) for k, v in m.headers())["dlq.reason"] for m in dead}
    assert set(reasons) == set(bad)
    assert "invalid JSON" in reasons["truncated"]
    assert "name: Field required" in reasons["no-name"]
    assert "data" in reasons["data-not-object"] and "invalid JSON event" in reasons["data-not-object"]
    for key in ("array", "text"):
        assert "expected an Avro single-object record" in reasons[key] and "JSON object" in reasons[key]
    assert "PIPELINE_SCHEMA_REGISTRY_URL" in reasons["confluent"]
