"""Operator tools on a real broker: replaying runs (failed and cancelled, once), a filtered topic replay
stopped halfway and resumed, a group reset that refuses a live group, and a dead-letter round trip."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

from pipeline.kafka import topics as t
from pipeline.kafka.client import producer_config
from pipeline.kafka.loop import run_in_thread
from pipeline.ops import topic_replay
from pipeline.ops.positions import parse_position
from pipeline.serde import EVENT, Serde
from pipeline.serde.models import Event
from pipeline.testing.helpers import await_records
from pipeline.testing.stack import Stack

from .apps import app

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          env=stack.env(PYTHONPATH=str(ROOT), COLUMNS="200"), timeout=120)


def test_failed_and_cancelled_runs_are_replayed_once(kafka_bootstrap: str) -> None:
    with Stack(app, kafka_bootstrap) as stack:
        stack.send("test/doomed", {"n": 1}, id="D1")
        stack.send("test/long", {"key": "k", "sleep": 300}, id="L1")
        stack.wait_run(lambda r: r["event_id"] == "L1" and r["status"] == "Sleeping")
        stack.send("test/cancel", {"key": "k"}, id="C1")
        stack.wait_run(lambda r: r["event_id"] == "L1" and r["status"] == "Cancelled")
        stack.wait_run(lambda r: r["event_id"] == "D1" and r["status"] == "Failed")
        for function in ("doomed", "long"):
            for _ in range(2):  # the same command twice: each run is replayed once
                done = cli(stack, "replay", "runs", "--app", "tests.e2e.apps:app", "--function", function,
                           "--status", "failed,cancelled", "--from", "-10m")
                assert done.returncode == 0, done.stderr
        stack.wait_run(lambda r: r.get("replay_of") is not None and r["function_id"] == "e2e-long"
                       and r["status"] == "Sleeping")
        stack.wait_run(lambda r: r.get("replay_of") is not None and r["function_id"] == "e2e-doomed"
                       and r["status"] == "Failed")
        time.sleep(1.5)
        runs = stack.latest_runs().values()
        replays = [r for r in runs if r.get("replay_of")]
        assert len(replays) == 2
        originals = {r["run_id"]: r for r in runs if not r.get("replay_of") and r["event_id"] in ("D1", "L1")}
        assert {r["replay_of"] for r in replays} == set(originals)
        assert all(r["event"] == originals[r["replay_of"]]["event"] for r in replays)  # the same event


def test_a_filtered_topic_replay_stopped_halfway_resumes_without_duplicates(kafka_bootstrap: str) -> None:
    with Stack(app, kafka_bootstrap, services=()) as stack:
        for i in range(60):
            stack.send("orders/paid" if i % 2 else "orders/other", {"n": i, "big": i >= 30}, id=f"e{i}")
        src, dst = stack.settings.topic(t.EVENTS), stack.settings.topic(t.SYSTEM_EVENTS)
        job = topic_replay.Job(src, dst, parse_position("-1h"), None, where="event.data.big", name="orders/p*")
        assert sum(k for _, k in topic_replay.dry_run(kafka_bootstrap, job).values()) == 15
        calls = {"n": 0}

        def stop_after_first_batch() -> bool:
            calls["n"] += 1
            return True

        first = topic_replay.run(kafka_bootstrap, job, stop=stop_after_first_batch, batch=10)
        assert calls["n"] == 1 and first[0] == 10  # stopped after one batch of ten records
        second = topic_replay.run(kafka_bootstrap, job, batch=10)
        assert first[0] + second[0] == 60 and first[1] + second[1] == 15
        copies = await_records(kafka_bootstrap, dst, 15, timeout=20)
        time.sleep(1)
        serde = Serde()
        names = [serde.decode_as(EVENT, m.value()) for m in copies]
        sources = [dict(m.headers())["replay.source"] for m in copies]
        assert len(set(sources)) == 15 and all(n["name"] == "orders/paid" for n in names)


def test_a_group_reset_refuses_a_live_group_and_moves_a_stopped_one(kafka_bootstrap: str) -> None:
    with Stack(app, kafka_bootstrap, services=("matcher",)) as stack:
        for i in range(3):
            stack.send("test/none", {}, id=f"g{i}")
        deadline = time.monotonic() + 30
        while stack.loops["matcher"].processed < 3:  # the matcher is a live member that has read the events
            assert time.monotonic() < deadline, "the matcher never processed the events"
            time.sleep(0.05)
        plan = cli(stack, "replay", "group", "matcher", "--to-offset", "0", "--topic", "events")
        assert plan.returncode == 0 and "dry run" in plan.stdout  # a plan by default, nothing moved
        live = cli(stack, "replay", "group", "matcher", "--to-offset", "0", "--topic", "events", "--execute")
        assert live.returncode == 1 and "live members" in live.stderr
        stack.stop_service("matcher")
        moved = cli(stack, "replay", "group", "matcher", "--to-time", "-1h", "--topic", "events", "--execute")
        assert moved.returncode == 0, moved.stderr
        assert moved.stdout.count("-> 0") >= 1


def test_a_dead_letter_round_trip(kafka_bootstrap: str) -> None:
    with Stack(app, kafka_bootstrap, max_event_bytes=200) as stack:
        event = Event(name="test/wild.big", data={"pad": "x" * 400}, id="BIG").with_defaults()
        producer = Producer(producer_config(kafka_bootstrap))
        producer.produce(stack.settings.topic(t.EVENTS), key=b"BIG", value=Serde().encode(EVENT, event.to_record()))
        producer.flush(10)
        await_records(kafka_bootstrap, stack.settings.topic(t.DEAD_LETTER), 1, timeout=30)
        listed = cli(stack, "dlq", "list", "--json")
        rows = [json.loads(line) for line in listed.stdout.splitlines()]
        assert len(rows) == 1 and "OversizedRecord" in rows[0]["reason"], listed.stderr
        shown = json.loads(cli(stack, "dlq", "show", "1").stdout)
        assert shown["value"]["name"] == "test/wild.big" and shown["headers"]["dlq.service"] == "matcher"
        # the fix: a matcher that takes bigger events
        stack.stop_service("matcher")
        matcher = stack.build_loop("matcher", max_event_bytes=512 * 1024)
        stack.loops["matcher"], stack.threads["matcher"] = matcher, run_in_thread(matcher)
        for _ in range(2):  # each dead letter is re-published once, however often the command runs
            done = cli(stack, "dlq", "replay", "--reason", "Oversized")
            assert done.returncode == 0, done.stderr
        assert "replayed 0, skipped 1" in done.stdout
        run = stack.wait_run(lambda r: r["event_id"] == "BIG" and r["status"] == "Completed", timeout=60)
        assert json.loads(run["output"]) == "test/wild.big"
        time.sleep(1)
        assert sum(r["event_id"] == "BIG" for r in stack.latest_runs().values()) == 1
