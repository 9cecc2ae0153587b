"""Event-id deduplication on a real broker: an id received again within the window starts nothing,
whatever its ``ts``, over HTTP, with ``client.send`` and straight to Kafka; and after a matcher restart.

No fixed sleeps: the matcher counts the duplicates it drops, so once it has counted every copy sent a second
time (and each first copy's run completed), every copy was processed and no second run can still come."""

from __future__ import annotations

import asyncio
import time

import pytest
from fastapi.testclient import TestClient

import pipeline as inngest
from pipeline.api import create_app
from pipeline.testing.stack import Stack

from .apps import app

pytestmark = pytest.mark.integration


def runs_of(stack: Stack, event_id: str) -> list[dict]:
    return [r for r in stack.latest_runs().values() if r["event_id"] == event_id and r["function_id"] == "e2e-wild"]


def wait_duplicates(stack: Stack, count: int, timeout: float = 30) -> None:
    """Wait until the running matcher has dropped ``count`` duplicates (its effect of the last copy sent)."""
    deadline = time.monotonic() + timeout
    while (seen := stack.loops["matcher"].processor.duplicates) < count:
        assert time.monotonic() < deadline, f"the matcher dropped {seen} duplicates, not {count}"
        time.sleep(0.05)


def test_same_id_with_a_new_ts_starts_one_run_however_it_is_sent(kafka_bootstrap: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    with Stack(app, kafka_bootstrap) as stack:
        monkeypatch.setenv("PIPELINE_BOOTSTRAP_SERVERS", kafka_bootstrap)
        monkeypatch.setenv("PIPELINE_TOPIC_PREFIX", stack.settings.topic_prefix)
        client = inngest.Inngest(app_id="dedup")
        stack.send("test/wild.a", id="kafka-1", ts=1_700_000_000_000)
        stack.send("test/wild.a", id="kafka-1", ts=1_700_000_999_000)
        client.send_sync(inngest.Event(name="test/wild.a", id="sync-1", ts=1_700_000_000_000))
        client.send_sync(inngest.Event(name="test/wild.a", id="sync-1", ts=1_700_000_500_000))
        asyncio.run(client.send(inngest.Event(name="test/wild.a", id="async-1")))
        time.sleep(0.01)  # a new ts (now)
        asyncio.run(client.send(inngest.Event(name="test/wild.a", id="async-1")))
        with TestClient(create_app(stack.settings)) as http:
            for ts in (1_700_000_000_000, 1_700_000_123_000):
                answer = http.post("/e/any", json={"name": "test/wild.a", "id": "http-1", "ts": ts})
                assert answer.status_code == 200, answer.text
                assert answer.json()["ids"] == ["http-1"]  # the duplicate is accepted, as Inngest does
        for event_id in ("kafka-1", "sync-1", "async-1", "http-1"):
            stack.wait_run(lambda r, e=event_id: r["event_id"] == e and r["status"] == "Completed")
        wait_duplicates(stack, 4)  # every second copy processed, and dropped: no second run is on its way
        counts = {e: len(runs_of(stack, e)) for e in ("kafka-1", "sync-1", "async-1", "http-1")}
        assert counts == {"kafka-1": 1, "sync-1": 1, "async-1": 1, "http-1": 1}
        assert runs_of(stack, "kafka-1")[0]["event"].find("1700000000000") > 0  # the first copy won
        assert stack.loops["matcher"].processor.duplicates == 4


def test_dedup_survives_a_matcher_restart_and_ends_with_the_window(kafka_bootstrap: str) -> None:
    """Within the window (6 s), a restarted matcher still knows the id; a matcher whose window (1 s) has passed
    since the id was first received takes it as a new event. Every copy goes to partition 0, where the id's
    dedup entry lives, so the marker sent behind a copy is processed after it."""
    with Stack(app, kafka_bootstrap, event_dedup_window_ms=6000) as stack:
        stack.send("test/wild.a", id="win-1", ts=1, partition=0)
        first_sent = time.monotonic()
        stack.wait_run(lambda r: r["event_id"] == "win-1" and r["status"] == "Completed")
        stack.stop_service("matcher")
        stack.start_service("matcher")  # rebuilds its table from event-ids
        stack.send("test/wild.a", id="win-1", ts=2, partition=0)
        stack.send("test/wild.b", id="marker-1", partition=0)
        stack.wait_run(lambda r: r["event_id"] == "marker-1" and r["status"] == "Completed", timeout=60)
        assert len(runs_of(stack, "win-1")) == 1
        assert stack.loops["matcher"].processor.duplicates == 1
        # past the window: a matcher with a 1 s window, 1 s after the first copy, takes the id as new again
        stack.stop_service("matcher")
        while time.monotonic() - first_sent < 1.2:
            time.sleep(0.05)
        stack.start_service("matcher", event_dedup_window_ms=1000)
        stack.send("test/wild.a", id="win-1", ts=3, partition=0)
        stack.wait_run(lambda r: r["event_id"] == "win-1" and r["status"] == "Completed" and '"ts":3' in r["event"])
        assert len(runs_of(stack, "win-1")) == 2
        assert stack.loops["matcher"].processor.duplicates == 0
