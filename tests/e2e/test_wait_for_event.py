"""``step.wait_for_event`` on a real broker: resolved by the matching event (sync and async), None on timeout,
events from before the wait ignored, and race-proof: an event received after the wait began whose signal
reached the join before the run's listener still resolves it.

All but the race test (which stops the run owner) share the module's stack, each with its own ids and keys."""

from __future__ import annotations

import json
import time

import pytest

from pipeline.testing.stack import Stack

from .apps import app

pytestmark = pytest.mark.integration


def output(run: dict) -> object:
    return json.loads(run["output"])


def test_the_matching_event_resolves_the_wait_and_others_do_not(shared_stack: Stack) -> None:
    stack = shared_stack  # the module's: this test waits for its own runs, by event id
    stack.send("test/wait.start", {"key": "k1"}, id="W1")
    stack.wait_run(lambda r: r["event_id"] == "W1" and r["status"] == "Waiting")
    stack.send("test/wait.approve", {"key": "other", "n": 0}, id="A0")  # another key: not for this run
    stack.send("test/wait.approve", {"key": "k1", "n": 1}, id="A1")
    stack.send("test/wait.approve", {"key": "k1", "n": 2}, id="A2")  # the first match won already
    done = stack.wait_run(lambda r: r["event_id"] == "W1" and r["status"] == "Completed")
    assert output(done) == {"approved": {"key": "k1", "n": 1}, "by": "A1"}
    step = next(s for s in done["steps"] if s["id"] == "approval")
    assert step["op"] == "wait_for_event" and json.loads(step["output"])["id"] == "A1"


def test_an_async_handler_waits_by_event_name_and_goes_on(shared_stack: Stack) -> None:
    stack = shared_stack  # the module's: this test waits for its own runs, by event id
    stack.send("test/wait.async", {}, id="WA")
    stack.wait_run(lambda r: r["event_id"] == "WA" and r["status"] == "Waiting")
    stack.send("test/wait.any", {"x": 1}, id="ANY")
    done = stack.wait_run(lambda r: r["event_id"] == "WA" and r["status"] == "Completed")
    assert output(done) == {"got": {"x": 1}, "after": "went on"}


def test_a_wait_times_out_with_none_and_ignores_events_from_before_it_began(shared_stack: Stack) -> None:
    stack = shared_stack  # the module's: this test waits for its own runs, by event id
    stack.send("test/wait.start", {"key": "k2", "timeout_ms": 2000, "pause": 2}, id="W2")
    stack.wait_run(lambda r: r["event_id"] == "W2" and r["status"] == "Running")
    stack.send("test/wait.approve", {"key": "k2"}, id="EARLY")  # while the handler pauses: before the wait
    waiting = stack.wait_run(lambda r: r["event_id"] == "W2" and r["status"] == "Waiting")
    done = stack.wait_run(lambda r: r["event_id"] == "W2" and r["status"] == "Completed", timeout=30)
    assert output(done) == {"approved": None, "by": None}
    step = next(s for s in done["steps"] if s["id"] == "approval")
    since = json.loads(waiting["waiting_for"])["since"]
    assert step["output"] == "null" and step["completed_at"] - since >= 2000


def test_an_event_whose_signal_reaches_the_join_before_the_listener_still_resolves_the_wait(
        kafka_bootstrap: str) -> None:
    with Stack(app, kafka_bootstrap) as stack:
        stack.send("test/wait.start", {"key": "k3", "pause": 3}, id="W3")
        stack.wait_run(lambda r: r["event_id"] == "W3" and r["status"] == "Running")
        stack.stop_service("run-owner")  # the worker's "wait" outcome will sit in run-commands, unapplied
        worker = stack.loops["worker"]
        deadline = time.monotonic() + 30
        while worker.completed < 1:  # the handler's pause is over: the wait began, its outcome is acknowledged
            assert time.monotonic() < deadline, "the worker never delivered the wait outcome"
            time.sleep(0.05)
        stack.send("test/wait.approve", {"key": "k3", "n": 3}, id="LATE")
        canceller = stack.loops["canceller"].processor
        deadline = time.monotonic() + 20
        while not any(i.signal_count for i in canceller.indexes.values()):  # the signal is in the join, no listener
            assert time.monotonic() < deadline, "the signal never reached the canceller"
            time.sleep(0.1)
        assert not any(i.listener_count for i in canceller.indexes.values())
        stack.start_service("run-owner")  # applies the outcome, registers the listener: it meets the signal
        done = stack.wait_run(lambda r: r["event_id"] == "W3" and r["status"] == "Completed", timeout=60)
        assert output(done) == {"approved": {"key": "k3", "n": 3}, "by": "LATE"}
        assert canceller.resumes_sent == 1
