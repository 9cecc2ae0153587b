"""Functions run end to end on a real broker: matching, dedupe, durable steps, sleep, retries, system triggers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.protocol.ids import run_id_for
from pipeline.testing.stack import Stack

from .apps import app
from .procs import service_process

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_event_starts_one_run_per_matching_function_even_if_sent_twice(kafka_bootstrap: str) -> None:
    with Stack(app, kafka_bootstrap) as stack:
        stack.send("test/wild.a", {}, id="dup-1", ts=1_700_000_000_000)
        stack.send("test/wild.a", {}, id="dup-1", ts=1_700_000_000_000)
        stack.send("test/wild.b", {}, id="other")
        done = stack.wait_run(lambda r: r["event_id"] == "other" and r["status"] == "Completed")
        stack.wait_run(lambda r: r["event_id"] == "dup-1" and r["status"] == "Completed")
        deadline = time.monotonic() + 30  # the matcher dropped the second copy: no second run is on its way
        while stack.loops["matcher"].processor.duplicates < 1:
            assert time.monotonic() < deadline, "the second copy of dup-1 was never dropped as a duplicate"
            time.sleep(0.05)
        runs = [r for r in stack.latest_runs().values() if r["function_id"] == "e2e-wild"]
        assert sorted(r["event_id"] for r in runs) == ["dup-1", "other"]
        assert done["output"] == '"test/wild.b"'
        dup = next(r for r in runs if r["event_id"] == "dup-1")
        assert dup["run_id"] == run_id_for("e2e-wild", "dup-1", 1_700_000_000_000)


def test_trigger_expression_filters_runs(kafka_bootstrap: str) -> None:
    with Stack(app, kafka_bootstrap) as stack:
        # one partition, the matching event last: once its run completed, the matcher had judged the other two
        stack.send("test/filter", {"plan": "free", "amount": 500}, id="f-free", partition=0)
        stack.send("test/filter", {"plan": "pro", "amount": 50}, id="f-small", partition=0)
        stack.send("test/filter", {"plan": "pro", "amount": 100.5}, id="f-pro", partition=0)
        stack.wait_run(lambda r: r["event_id"] == "f-pro" and r["status"] == "Completed")
        assert stack.loops["matcher"].processor.runs_started == 1  # no start for the filtered-out two
        assert {r["event_id"] for r in stack.latest_runs().values()} == {"f-pro"}


def test_sleep_of_three_seconds_wakes_and_completes(kafka_bootstrap: str) -> None:
    with Stack(app, kafka_bootstrap) as stack:
        stack.send("test/sleep", {"seconds": 3}, id="nap")
        sleeping = stack.wait_run(lambda r: r["status"] == "Sleeping")
        done = stack.wait_run(lambda r: r["function_id"] == "e2e-sleeper" and r["status"] == "Completed", timeout=20)
        nap = next(s for s in done["steps"] if s["id"] == "nap")
        slept_ms = nap["completed_at"] - next(
            s for s in done["steps"] if s["id"] == "before")["completed_at"]
        assert 3000 <= slept_ms <= 4500, slept_ms
        assert sleeping["wake_at"] is not None
        # a function triggered by a system event (function.finished of the sleeper) runs too
        follow = stack.wait_run(lambda r: r["function_id"] == "e2e-after-sleeper" and r["status"] == "Completed")
        assert follow["output"] == f'"{done["run_id"]}"'


def test_failing_step_retries_then_fails_with_function_failed(kafka_bootstrap: str, tmp_path: Path) -> None:
    log = tmp_path / "flaky.log"
    with Stack(app, kafka_bootstrap, retry_backoff_ms=100) as stack:
        stack.send("test/flaky", {"log": str(log)}, id="fl-1")
        failed = stack.wait_run(lambda r: r["status"] == "Failed", timeout=30)
        (event,) = stack.wait_system_event("inngest/function.failed")
        finished = stack.wait_system_event("inngest/function.finished")
        assert log.read_text().splitlines() == ["attempt 0", "attempt 1", "attempt 2"]
        assert event["data"]["run_id"] == failed["run_id"]
        assert event["data"]["function_id"] == "e2e-flaky"
        error = event["data"]["error"]
        assert (error["error"], error["message"], error["name"]) == ("step exploded", "step exploded", "RuntimeError")
        assert "in boom" in error["stack"]  # the step's own stack, as inngest-py reports it
        assert event["data"]["event"]["id"] == "fl-1"
        assert finished[0]["data"]["error"]["message"] == "step exploded"
        assert not stack.system_events_named("inngest/function.cancelled")


def test_owner_killed_with_a_step_in_flight_loses_nothing_and_repeats_no_step(kafka_bootstrap: str,
                                                                               tmp_path: Path) -> None:
    """The step runs on a worker, so the owner's death does not stop it: its outcome waits in Kafka for the
    restarted owner. No step runs twice and none is lost."""
    log, hold = tmp_path / "steps.log", tmp_path / "hold"
    hold.write_text("x")
    with Stack(app, kafka_bootstrap, services=("matcher", "worker")) as stack:
        owner = service_process(stack, "run-owner", "exec-1")
        try:
            stack.send("test/steps", {"log": str(log), "hold": str(hold)}, id="st-1")
            _wait_for_line(log, "two")
            owner.send_signal(signal.SIGKILL)
            owner.wait(10)
        finally:
            if owner.poll() is None:
                owner.kill()
        hold.unlink()  # the step finishes while no owner runs
        time.sleep(0.5)
        owner = service_process(stack, "run-owner", "exec-1")
        try:
            done = stack.wait_run(lambda r: r["status"] == "Completed", timeout=60)
        finally:
            owner.send_signal(signal.SIGTERM)
            assert owner.wait(30) == 0
    assert log.read_text().splitlines() == ["one", "two", "three"]
    assert [s["id"] for s in done["steps"]] == ["one", "two", "three"]
    assert done["output"] == '["a","b","c"]'


def test_worker_killed_mid_step_runs_the_step_again_and_the_run_completes_once(kafka_bootstrap: str,
                                                                                 tmp_path: Path) -> None:
    log, hold = tmp_path / "steps.log", tmp_path / "hold"
    hold.write_text("x")
    with Stack(app, kafka_bootstrap, services=("matcher", "run-owner", "canceller")) as stack:
        worker = service_process(stack, "worker", "w-1")
        try:
            stack.send("test/steps", {"log": str(log), "hold": str(hold)}, id="st-2")
            _wait_for_line(log, "two")
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
            hold.unlink()
            worker = service_process(stack, "worker", "w-1")
            done = stack.wait_run(lambda r: r["status"] == "Completed", timeout=90)
            time.sleep(1)
            finished = stack.system_events_named("inngest/function.finished")
        finally:
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(40) == 0
    # "one" completed before the kill and is never repeated; "two" was in flight and runs again.
    assert log.read_text().splitlines() == ["one", "two", "two", "three"]
    assert [s["id"] for s in done["steps"]] == ["one", "two", "three"]
    assert [e["data"]["run_id"] for e in finished] == [done["run_id"]]


def _wait_for_line(log: Path, line: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while line not in (log.read_text().splitlines() if log.exists() else []):
        assert time.monotonic() < deadline, f"{line!r} never appeared in {log}"
        time.sleep(0.05)


def test_replay_from_the_start_starts_no_second_run(kafka_bootstrap: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PIPELINE_BOOTSTRAP_SERVERS": kafka_bootstrap}
    with Stack(app, kafka_bootstrap) as stack:
        for i in range(5):
            stack.send("test/wild.replay", {"i": i}, id=f"rp-{i}")
        deadline = time.monotonic() + 30
        while sum(r["status"] == "Completed" for r in stack.latest_runs().values()) < 5:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(0.5)
        assert stack.runs is not None
        with stack.runs._cond:
            written = len(stack.runs.records)  # every state record so far
        stack.stop_service("matcher")
        env["PIPELINE_TOPIC_PREFIX"] = stack.settings.topic_prefix
        moved = subprocess.run([sys.executable, "-m", "pipeline.cli", "replay", "group", "matcher", "--to-offset", "0",
                                "--topic", "events", "--execute"], cwd=ROOT,
                               env=env, capture_output=True, text=True, timeout=60)
        assert moved.returncode == 0, moved.stderr
        assert moved.stdout.count("-> 0") == 3  # every events partition rewound
        matcher = stack.start_service("matcher")
        deadline = time.monotonic() + 30
        while matcher.processed < 5:  # the matcher reprocessed the whole topic
            assert time.monotonic() < deadline, matcher.processed
            time.sleep(0.1)
        time.sleep(1)
        assert len(stack.latest_runs()) == 5
        with stack.runs._cond:
            assert len(stack.runs.records) == written  # each replayed start was a no-op: no state written


def test_event_produced_without_id_gets_a_stable_one(kafka_bootstrap: str) -> None:
    from confluent_kafka import Producer

    from pipeline.serde import EVENT, Serde

    with Stack(app, kafka_bootstrap) as stack:
        producer = Producer({"bootstrap.servers": kafka_bootstrap})
        record = {"id": "", "name": "test/wild.raw", "data": "{}", "user": "{}", "ts": 0, "v": None}
        producer.produce(stack.settings.topic("events"), value=Serde().encode(EVENT, record))
        assert producer.flush(10) == 0
        run = stack.wait_run(lambda r: r["status"] == "Completed")
        assert len(run["event_id"]) == 26


def test_step_send_event_triggers_another_function_once(kafka_bootstrap: str) -> None:
    with Stack(app, kafka_bootstrap) as stack:
        stack.send("test/fan-out", {})
        parent = stack.wait_run(lambda r: r["function_id"] == "e2e-fan-out" and r["status"] == "Completed")
        child = stack.wait_run(lambda r: r["function_id"] == "e2e-wild" and r["status"] == "Completed")
        (sent_id,) = json.loads(parent["output"])
        assert child["event_id"] == sent_id
        assert json.loads(child["event"])["data"] == {"parent": parent["run_id"]}
