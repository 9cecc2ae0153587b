"""docs/producing-events.md's examples, run as written against the real broker: events from producers that know
nothing of this project (the broker's own console producer, a Node app on kafkajs) start the seed's run, and the
cancel written the same way cancels it."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from examples.newsletter import app as newsletter
from pipeline.testing.stack import Stack

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
NODE_APP = ROOT / "tests" / "producers" / "node"
CANCELLED = "inngest/function.cancelled"


def _seed_round_trip(stack: Stack, produce: object, import_id: str) -> None:
    """Produce the import, wait for its run to sleep, produce the cancel: the run is cancelled and cleaned up."""
    requested = {"name": "contacts/import.requested", "data": {"importId": import_id}, "id": f"{import_id}-requested"}
    cancelled = {"name": "contacts/import.cancelled", "data": {"importId": import_id}, "id": f"{import_id}-cancelled"}
    produce(requested)  # type: ignore[operator]
    run = stack.wait_run(lambda r: r["status"] == "Sleeping", timeout=60)
    assert json.loads(run["event"])["id"] == requested["id"]
    produce(cancelled)  # type: ignore[operator]
    (event,) = stack.wait_system_event(CANCELLED, timeout=60)
    assert event["data"]["run_id"] == run["run_id"]
    stack.wait_run(lambda r: r["function_id"] == "newsletter-app-cleanup-cancelled-import"
                   and r["status"] == "Completed", timeout=60)


def test_the_broker_s_console_producer(kafka_bootstrap: str) -> None:
    from pipeline.broker._fetch import ensure_kafka

    java = shutil.which("java")
    if java is None:
        pytest.skip("no java on PATH")
    libs = ensure_kafka(tools=True)  # the broker's jars plus kafka-tools (kafka-console-producer's classes)
    with Stack(newsletter, kafka_bootstrap) as stack:
        topic = stack.settings.topic("events")

        def produce(event: dict[str, object]) -> None:
            line = f"{event['id']}|{json.dumps(event)}\n"  # parse.key with key.separator='|', as the doc shows
            done = subprocess.run(
                [java, "-cp", f"{libs}/*", "org.apache.kafka.tools.ConsoleProducer", "--bootstrap-server",
                 kafka_bootstrap, "--topic", topic, "--property", "parse.key=true", "--property", "key.separator=|"],
                input=line, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr[-2000:]

        _seed_round_trip(stack, produce, "console-1")


def test_a_node_producer_on_kafkajs(kafka_bootstrap: str) -> None:
    node = shutil.which("node")
    if node is None or not (NODE_APP / "node_modules" / "kafkajs").exists():
        pytest.skip("node or tests/producers/node/node_modules missing: `make test` installs them (npm ci)")
    with Stack(newsletter, kafka_bootstrap) as stack:
        topic = stack.settings.topic("events")

        def produce(event: dict[str, object]) -> None:
            done = subprocess.run([node, "produce.mjs", kafka_bootstrap, topic, json.dumps(event)], cwd=NODE_APP,
                                  capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr[-2000:]

        started = time.monotonic()
        _seed_round_trip(stack, produce, "node-1")
        assert time.monotonic() - started < 120
