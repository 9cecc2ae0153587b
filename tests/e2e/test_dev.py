"""`pipeline dev` as a user runs it: one process with every service and the HTTP API, the seed scenario
driven over HTTP, and a clean stop on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline.testing.helpers import free_port, unique_name
from pipeline.testing.helpers import until as _poll

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll, counting HTTP errors (the API still starting) as not yet."""
    return _poll(check, timeout, what, ignore=(httpx.HTTPError,))


def test_dev_runs_the_seed_scenario_over_http(kafka_bootstrap: str, tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / "dev.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PIPELINE_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "PIPELINE_TOPIC_PREFIX": unique_name("dev") + ".", "PIPELINE_INSTANCE_ID": "dev-test"}
    with log_path.open("w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "dev", "--app", "examples.newsletter:app",
                                 "--port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        until(lambda: httpx.get(f"{base}/healthz").status_code == 200, 60, "the API to be ready")
        sent = httpx.post(f"{base}/e/dev-key", json={"name": "contacts/import.requested",
                                                     "data": {"importId": "abc"}})
        assert sent.status_code == 200, sent.text
        (event_id,) = sent.json()["ids"]
        run = until(lambda: next((r for r in httpx.get(f"{base}/v1/events/{event_id}/runs").json()["data"]
                                   if r["status"] == "Sleeping"), None), 60, "the import run to sleep")
        assert run["function_id"] == "newsletter-app-import-all-contacts"
        assert httpx.post(f"{base}/e/dev-key", json={"name": "contacts/import.cancelled",
                                                     "data": {"importId": "abc"}}).status_code == 200
        until(lambda: httpx.get(f"{base}/v1/runs/{run['run_id']}").json()["data"]["status"] == "Cancelled", 30,
               "the run to be cancelled")
        until(lambda: "Import was cancelled: abc" in log_path.read_text(), 30, "the cleanup function's log line")
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(60)
    assert code == 0, log_path.read_text()[-3000:]
    text = log_path.read_text()
    assert '"msg": "run started"' in text and '"msg": "run ended"' in text


def test_dev_runs_the_app_s_sources_and_shows_their_lag(kafka_bootstrap: str, tmp_path: Path) -> None:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    prefix = unique_name("devsrc") + "."
    topic = f"{prefix}user-orders"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(topic, 3, 1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(10):
        producer.produce(topic, key=f"o{i}", value=f'{{"kind": "created", "id": {i}}}'.encode())
    assert producer.flush(10) == 0
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PIPELINE_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "PIPELINE_TOPIC_PREFIX": prefix, "PIPELINE_INSTANCE_ID": "dev-src", "SOURCE_TOPIC": topic}
    with (tmp_path / "dev.log").open("w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "dev", "--app", "tests.e2e.source_app:app",
                                 "--port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        until(lambda: httpx.get(f"{base}/healthz").status_code == 200, 60, "the API to be ready")
        until(lambda: httpx.get(f"{base}/v1/sources").json()["data"][0]["lag"] == 0, 60, "the source to copy all")
        (source,) = httpx.get(f"{base}/v1/sources").json()["data"]
        assert source["id"] == "orders" and source["topic"] == topic
        def mapped() -> list[dict[str, object]] | None:
            events = [e for e in httpx.get(f"{base}/v1/events").json()["data"] if e["name"] == "shop/order.created"]
            return events if len(events) >= 10 else None

        events = until(mapped, 30, "the 10 mapped events")
        assert sorted(e["data"]["order"] for e in events) == list(range(10))  # type: ignore[index]
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0, (tmp_path / "dev.log").read_text()[-3000:]
