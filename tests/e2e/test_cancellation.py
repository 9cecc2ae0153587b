"""Cancellation end to end on a real broker: the seed scenario, the join, the ordering race, timeouts,
and exactly one ``inngest/function.cancelled`` per run when services are SIGKILLed mid-stream."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from examples.newsletter import app as newsletter
from pipeline.kafka.loop import ServiceLoop
from pipeline.matcher.service import Matcher
from pipeline.sdk.app import Registry
from pipeline.serde import Serde
from pipeline.testing.stack import Stack

from .apps import app as e2e
from .procs import service_process

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
CANCELLED = "inngest/function.cancelled"


def test_seed_scenario_cancel_on_then_cleanup(kafka_bootstrap: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pipeline.function")
    import_id = "bdce1b1b-6e3a-43e6-84c2-2deb559cdde6"
    with Stack(newsletter, kafka_bootstrap) as stack:
        trigger_id = stack.send("contacts/import.requested", {"importId": import_id})
        run = stack.wait_run(lambda r: r["status"] == "Sleeping")  # sleeping between batches (30 s)
        sent_at = time.time()
        stack.send("contacts/import.cancelled", {"importId": import_id})
        (cancelled,) = stack.wait_system_event(CANCELLED)
        assert time.time() - sent_at < 10  # cancelled at once, not when the sleep ends
        final = stack.wait_run(lambda r: r["run_id"] == run["run_id"] and r["status"] == "Cancelled")
        cleanup = stack.wait_run(lambda r: r["function_id"] == "newsletter-app-cleanup-cancelled-import"
                                 and r["status"] == "Completed")
    trigger = json.loads(run["event"])
    assert cancelled["name"] == CANCELLED
    assert cancelled["id"] == run["run_id"]
    assert isinstance(cancelled["ts"], int)
    assert cancelled["data"] == {
        "error": {"error": "function cancelled", "message": "function cancelled", "name": "Error"},
        "event": trigger,
        "events": [trigger],
        "function_id": "newsletter-app-import-all-contacts",
        "run_id": run["run_id"],
    }
    assert trigger["id"] == trigger_id and trigger["data"] == {"importId": import_id} and trigger["user"] == {}
    assert set(trigger) == {"data", "id", "name", "ts", "user"}
    assert final["cancel_reason"] == "cancel_on"
    assert [s["id"] for s in final["steps"]] == ["load-contacts"]  # no later step started
    assert cleanup["output"] == json.dumps(f"Import was cancelled: {import_id}")
    assert f"Import was cancelled: {import_id}" in caplog.text


def test_non_matching_cancel_leaves_the_run_alone(kafka_bootstrap: str) -> None:
    with Stack(e2e, kafka_bootstrap) as stack:
        stack.send("test/long", {"key": "k1", "sleep": 3})
        stack.wait_run(lambda r: r["function_id"] == "e2e-long" and r["status"] == "Sleeping")
        stack.send("test/cancel", {"key": "other"})
        stack.send("test/cancel", {})  # no key at all
        done = stack.wait_run(lambda r: r["function_id"] == "e2e-long" and r["status"] == "Completed", timeout=20)
        assert done["output"] == '"done"'
        assert not stack.system_events_named(CANCELLED)


def test_cancel_sent_before_the_trigger_does_not_cancel(kafka_bootstrap: str) -> None:
    with Stack(e2e, kafka_bootstrap) as stack:
        stack.send("test/cancel", {"key": "early"})
        time.sleep(0.05)
        stack.send("test/long", {"key": "early", "sleep": 2})
        done = stack.wait_run(lambda r: r["function_id"] == "e2e-long" and r["status"] == "Completed", timeout=20)
        assert done["cancel_reason"] is None
        assert not stack.system_events_named(CANCELLED)


class _RunPathStopped(Matcher):
    """A matcher whose run path (trigger events) is held back for a while: the cancel overtakes it."""

    hold_seconds = 4.0

    def process(self, msg: Any, out: Any) -> None:
        if b"test/long" in (msg.value() or b""):
            time.sleep(self.hold_seconds)
        super().process(msg, out)


def _index_order(stack: Stack) -> list[str]:
    """Schema names on cancel-index in partition order (to prove the signal came first)."""
    serde = Serde()
    topic = stack.settings.topic("cancel-index")
    consumer = Consumer({"bootstrap.servers": stack.bootstrap, "group.id": "inspect", "enable.partition.eof": True,
                         "isolation.level": "read_committed"})
    meta = consumer.list_topics(topic, timeout=10).topics[topic]
    consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
    names: list[str] = []
    eof = 0
    while eof < len(meta.partitions):
        msg = consumer.poll(5)
        if msg is None:
            break
        if msg.error():
            eof += 1
            continue
        if msg.value() is not None:
            names.append(serde.decode(msg.value())[0])
    consumer.close()
    return names


def test_cancel_that_overtakes_the_listener_still_cancels(kafka_bootstrap: str) -> None:
    """Stop the matcher's run path, let the cancel through, then resume: the run is still cancelled."""
    with Stack(e2e, kafka_bootstrap, services=("run-owner", "canceller"), partitions=2) as stack:
        # range assignment puts one partition of *each* topic on each matcher (cooperative-sticky balances
        # only the total), so that the trigger and the cancel below meet different matchers
        loops = [ServiceLoop(_RunPathStopped(Registry([e2e]), stack.settings.model_copy(update={"instance_id": i})),
                             stack.settings.model_copy(update={"instance_id": i}),
                             consumer_overrides={"partition.assignment.strategy": "range"}) for i in ("m1", "m2")]
        threads = [threading.Thread(target=lp.run, daemon=True) for lp in loops]
        for th in threads:
            th.start()
        deadline = time.monotonic() + 30
        while not all(len(lp.assignment) == 2 for lp in loops):  # events + system-events, partition i each
            assert time.monotonic() < deadline, "matchers never shared the partitions"
            time.sleep(0.1)
        try:
            # the trigger and the cancel go to different events partitions, so different matchers
            stack.send("test/long", {"key": "race", "sleep": 60}, id="race-trigger", partition=0)
            time.sleep(0.2)
            stack.send("test/cancel", {"key": "race"}, id="race-cancel", partition=1)
            (cancelled,) = stack.wait_system_event(CANCELLED, timeout=40)
        finally:
            for lp in loops:
                lp.stop()
            for th in threads:
                th.join(30)
        assert cancelled["data"]["event"]["id"] == "race-trigger"
        order = _index_order(stack)
        assert order.index("pipeline.CancelSignal") < order.index("pipeline.CancelListener"), order


def test_function_timeout_cancels_without_a_cancel_event(kafka_bootstrap: str) -> None:
    with Stack(e2e, kafka_bootstrap) as stack:
        stack.send("test/timed", {})
        (cancelled,) = stack.wait_system_event(CANCELLED, timeout=20)
        run = stack.wait_run(lambda r: r["function_id"] == "e2e-timed" and r["status"] == "Cancelled")
        assert run["cancel_reason"] == "timeout" and run["cancel_source"] == "finish"
        assert cancelled["data"]["function_id"] == "e2e-timed"
        assert 1800 <= run["ended_at"] - run["started_at"] <= 4000


def _service(stack: Stack, name: str, instance: str) -> subprocess.Popen:
    return service_process(stack, name, instance)


def test_sigkill_of_canceller_and_run_owner_mid_stream_gives_exactly_one_cancelled_per_run(
        kafka_bootstrap: str) -> None:
    runs = 40
    with Stack(e2e, kafka_bootstrap, services=("matcher", "worker")) as stack:
        procs = {name: _service(stack, name, f"{name}-1") for name in ("run-owner", "canceller")}
        try:
            for i in range(runs):
                stack.send("test/long", {"key": f"k{i}", "sleep": 300}, id=f"L{i}")
            deadline = time.monotonic() + 60
            while sum(1 for r in stack.latest_runs().values() if r["status"] == "Sleeping") < runs:
                assert time.monotonic() < deadline, "runs did not all start"
                time.sleep(0.2)
            for i in range(runs):
                stack.send("test/cancel", {"key": f"k{i}"}, id=f"C{i}")
                if i == runs // 3:
                    procs["canceller"].send_signal(signal.SIGKILL)
                if i == runs // 2:
                    procs["run-owner"].send_signal(signal.SIGKILL)
            for p in procs.values():
                p.wait(10)
            procs = {name: _service(stack, name, f"{name}-1") for name in ("run-owner", "canceller")}
            stack.wait_system_event(CANCELLED, timeout=90, count=runs)
            time.sleep(3)  # duplicates, if any, would arrive now
            cancelled = stack.system_events_named(CANCELLED)
        finally:
            for p in procs.values():
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
                    p.wait(30)
    ids = [e["id"] for e in cancelled]
    assert len(ids) == runs and len(set(ids)) == runs
    assert {e["data"]["event"]["id"] for e in cancelled} == {f"L{i}" for i in range(runs)}


def test_a_cancel_applies_at_once_the_step_in_flight_finishes_and_no_later_step_starts(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    log = tmp_path / "slow.log"
    with Stack(e2e, kafka_bootstrap) as stack:
        stack.send("test/slow", {"key": "s1", "log": str(log)})
        deadline = time.monotonic() + 30
        while "slow started" not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        stack.send("test/slow.cancel", {"key": "s1"})
        (cancelled,) = stack.wait_system_event(CANCELLED, timeout=30)
        assert "slow finished" not in log.read_text()  # the cancel did not wait for the step (it takes 3 s)
        run = stack.wait_run(lambda r: r["status"] == "Cancelled")
        while "slow finished" not in log.read_text():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(1.5)  # the step's outcome reaches the owner now, and starts nothing
        final = stack.latest_runs()[run["run_id"]]
    assert log.read_text().splitlines() == ["slow started", "slow finished"]
    assert final["steps"] == [] and final["status"] == "Cancelled"
    assert cancelled["data"]["run_id"] == run["run_id"]
