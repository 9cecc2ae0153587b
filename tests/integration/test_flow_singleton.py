"""Singleton against a real broker: at most one active run per key, through a run-owner SIGKILL (issue 21)."""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest

from pipeline.testing.stack import Stack
from tests.e2e.procs import service_process

from .flow_apps import app

pytestmark = pytest.mark.integration
APP = "tests.integration.flow_apps:app"


def _max_live(states: list[dict[str, Any] | None], function_id: str) -> int:
    """The most runs of ``function_id`` that were active at once, replaying the runs topic's records in order
    (one key: one partition, so its records are in commit order)."""
    live: set[str] = set()
    most = 0
    for state in states:
        if state is None or state["function_id"] != function_id:
            continue
        if state["status"] in ("Completed", "Failed", "Cancelled", "Skipped"):
            live.discard(state["run_id"])
        else:
            live.add(state["run_id"])
        most = max(most, len(live))
    return most


@pytest.mark.parametrize("kill", [False, True], ids=["steady", "owner-killed-mid-burst"])
def test_a_burst_of_ten_in_cancel_mode_gives_nine_cancelled_and_one_completed(kafka_bootstrap: str,
                                                                               kill: bool) -> None:
    with Stack(app, kafka_bootstrap, services=("matcher", "canceller", "worker")) as stack:
        owner = service_process(stack, "run-owner", "own-1", app=APP)
        try:
            for n in range(10):
                stack.send("flow/single", {"k": "acct-1", "n": str(n), "sleep": 3}, id=f"single-{n}")
                time.sleep(0.15)
                if kill and n == 4:
                    stack.wait_run(lambda r: r["function_id"] == "flow-single" and r["status"] == "Cancelled",
                                   timeout=60)
                    owner.send_signal(signal.SIGKILL)
                    owner.wait(10)
                    owner = service_process(stack, "run-owner", "own-1", app=APP)
            done = stack.wait_run(lambda r: r["function_id"] == "flow-single" and r["status"] == "Completed",
                                  timeout=90)
            time.sleep(1.5)
            runs = [r for r in stack.latest_runs().values() if r["function_id"] == "flow-single"]
            cancelled = stack.system_events_named("inngest/function.cancelled")
            assert stack.runs is not None
            with stack.runs._cond:
                history = list(stack.runs.records)
        finally:
            owner.send_signal(signal.SIGTERM)
            owner.wait(30)
    assert len(runs) == 10
    assert sorted(r["status"] for r in runs) == ["Cancelled"] * 9 + ["Completed"]
    # the last one to reach the owner completes (events on different partitions may reach it out of send order)
    assert done["queued_at"] == max(r["queued_at"] for r in runs)
    assert all(r["cancel_reason"] == "singleton" for r in runs if r["status"] == "Cancelled")
    ids = [e["data"]["run_id"] for e in cancelled]
    assert sorted(ids) == sorted(r["run_id"] for r in runs if r["status"] == "Cancelled")  # exactly one each
    assert _max_live(history, "flow-single") == 1


def test_skip_mode_records_the_new_run_as_skipped_and_other_keys_run_side_by_side(kafka_bootstrap: str) -> None:
    with Stack(app, kafka_bootstrap) as stack:
        stack.send("flow/single-skip", {"k": "a", "n": "1", "sleep": 3}, id="skip-1")
        stack.wait_run(lambda r: r["function_id"] == "flow-single-skip" and r["status"] == "Sleeping", timeout=30)
        stack.send("flow/single-skip", {"k": "a", "n": "2"}, id="skip-2")
        stack.send("flow/single-skip", {"k": "b", "n": "3", "sleep": 1}, id="skip-3")
        skipped = stack.wait_run(lambda r: r["function_id"] == "flow-single-skip" and r["status"] == "Skipped",
                                 timeout=30)
        deadline = time.monotonic() + 60
        while sum(r["status"] == "Completed" for r in stack.latest_runs().values()) < 2:
            assert time.monotonic() < deadline, stack.snapshot()
            time.sleep(0.2)
        runs = {r["event_id"]: r for r in stack.latest_runs().values()}
        # after the first run ended, a new run of its key starts again
        stack.send("flow/single-skip", {"k": "a", "n": "4", "sleep": 0}, id="skip-4")
        again = stack.wait_run(lambda r: r["event_id"] == "skip-4" and r["status"] == "Completed", timeout=30)
    assert skipped["event_id"] == "skip-2" and skipped["cancel_source"] == runs["skip-1"]["run_id"]
    assert skipped["started_at"] is None and skipped["steps"] == []
    assert runs["skip-1"]["status"] == runs["skip-3"]["status"] == "Completed"
    assert again["output"] == '"4"'
    assert not stack.system_events_named("inngest/function.cancelled")


def test_an_event_whose_singleton_key_fails_is_dead_lettered_with_the_reason(kafka_bootstrap: str) -> None:
    from pipeline.testing.helpers import await_records

    with Stack(app, kafka_bootstrap, services=("matcher", "run-owner")) as stack:
        stack.send("flow/single-skip", {"n": "no-key"}, id="keyless", partition=0)
        stack.send("flow/single-skip", {"k": "a", "n": "1", "sleep": 0}, id="keyed", partition=0)
        dead = await_records(kafka_bootstrap, stack.settings.topic("dead-letter"), 1, timeout=30)
        stack.wait_run(lambda r: r["event_id"] == "keyed", timeout=30)  # the matcher went on
        runs = stack.latest_runs()
    (record,) = dead
    headers = {k: v.decode() for k, v in record.headers()}
    assert record.key() == b"keyless" and headers["dlq.service"] == "matcher"
    assert "event.data.k" in headers["dlq.reason"], headers
    assert all(r["event_id"] != "keyless" for r in runs.values())
