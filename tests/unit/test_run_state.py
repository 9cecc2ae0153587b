"""Run state transitions (pure): start, steps, sleep/wake, retries, completion, cancellation."""

from __future__ import annotations

import json

from pipeline.runs import state as st
from pipeline.sysevents.builders import FUNCTION_CANCELLED, FUNCTION_FAILED, FUNCTION_FINISHED

EVENT = {"data": {"importId": "abc"}, "id": "01EV", "name": "contacts/import.requested", "ts": 1000, "user": {}}


def _started(now: int = 10_000, start_timeout: int | None = None) -> dict:
    cmd = st.start_command("RUN1", "app-fn", json.dumps(EVENT), 9_000, now)
    tr = st.start(cmd, EVENT["id"], now, start_timeout_ms=start_timeout)
    assert tr.state is not None
    return tr.state


def test_start_queues_a_run_and_its_first_execution() -> None:
    cmd = st.start_command("RUN1", "app-fn", json.dumps(EVENT), 9_000, 10_000)
    tr = st.start(cmd, EVENT["id"], 10_000, start_timeout_ms=5_000)
    assert tr.state["status"] == "Queued"
    assert tr.state["received_at"] == 9_000
    assert tr.state["deadline_at"] == 15_000
    assert [c["kind"] for c in tr.commands] == ["execute"]
    assert tr.commands[0]["attempt"] == 0


def test_begin_sets_running_and_finish_deadline() -> None:
    s = st.begin(_started(start_timeout=5_000), 11_000, finish_timeout_ms=60_000)
    assert s["status"] == "Running" and s["started_at"] == 11_000 and s["deadline_at"] == 71_000


def test_step_completed_stores_output_and_queues_next() -> None:
    s = st.begin(_started(), 11_000, finish_timeout_ms=None)
    tr = st.step_completed(s, "load", "run", '[1,2]', 12_000)
    assert tr.state["steps"] == [{"id": "load", "op": "run", "output": "[1,2]", "completed_at": 12_000}]
    assert tr.commands[0]["kind"] == "execute"
    assert tr.state["version"] > s["version"]


def test_sleep_then_wake_records_the_sleep_step() -> None:
    s = st.begin(_started(), 11_000, finish_timeout_ms=None)
    tr = st.sleep(s, "pause", 20_000, 12_000)
    assert tr.state["status"] == "Sleeping" and tr.state["wake_at"] == 20_000 and not tr.commands
    assert st.next_timer(tr.state) == 20_000
    assert st.wake(tr.state, 19_999).state is None  # too early: nothing happens
    woke = st.wake(tr.state, 20_000)
    assert woke.state["status"] == "Running" and woke.state["wake_at"] is None
    assert woke.state["steps"][-1]["id"] == "pause" and woke.state["steps"][-1]["op"] == "sleep"
    assert woke.commands[0]["kind"] == "execute"


def test_sleep_in_the_past_completes_at_once() -> None:
    s = st.begin(_started(), 11_000, finish_timeout_ms=None)
    tr = st.sleep(s, "pause", 5_000, 12_000)
    assert tr.state["status"] == "Running" and tr.commands


def test_retries_back_off_then_fail_with_failed_and_finished() -> None:
    s = st.begin(_started(), 11_000, finish_timeout_ms=None)
    err = {"error": "boom", "message": "boom", "name": "RuntimeError"}
    tr = st.failed_attempt(s, err, retries=2, now_ms=12_000, backoff_ms=100)
    assert tr.state["attempt"] == 1 and tr.state["wake_at"] == 12_100 and tr.state["status"] == "Running"
    tr2 = st.failed_attempt(tr.state, err, retries=2, now_ms=13_000, backoff_ms=100)
    assert tr2.state["attempt"] == 2 and tr2.state["wake_at"] == 13_200
    final = st.failed_attempt(tr2.state, err, retries=2, now_ms=14_000, backoff_ms=100)
    assert final.state["status"] == "Failed" and final.ended
    assert [e["name"] for e in final.system_events] == [FUNCTION_FAILED, FUNCTION_FINISHED]
    assert final.system_events[0]["data"]["error"] == err


def test_non_retriable_error_fails_at_once() -> None:
    s = st.begin(_started(), 11_000, finish_timeout_ms=None)
    tr = st.failed_attempt(s, {"error": "x", "message": "x", "name": "E"}, retries=3, now_ms=12_000, backoff_ms=1,
                           retriable=False)
    assert tr.state["status"] == "Failed"


def test_completed_sends_finished_with_result() -> None:
    s = st.begin(_started(), 11_000, finish_timeout_ms=None)
    tr = st.completed(s, '{"saved": 3}', 12_000)
    assert tr.state["status"] == "Completed" and tr.ended
    (fin,) = tr.system_events
    assert fin["name"] == FUNCTION_FINISHED and fin["data"]["result"] == {"saved": 3}


def test_cancel_sends_cancelled_field_for_field_and_finished_but_not_failed() -> None:
    s = st.sleep(st.begin(_started(), 11_000, finish_timeout_ms=None), "pause", 99_000, 12_000).state
    tr = st.cancel(s, "cancel_on", "01CANCEL", 13_000)
    assert tr.state["status"] == "Cancelled" and tr.state["wake_at"] is None and tr.ended
    assert [e["name"] for e in tr.system_events] == [FUNCTION_CANCELLED, FUNCTION_FINISHED]
    cancelled = tr.system_events[0]
    assert cancelled["id"] == "RUN1"
    assert cancelled["data"] == {
        "error": {"error": "function cancelled", "message": "function cancelled", "name": "Error"},
        "event": EVENT, "events": [EVENT], "function_id": "app-fn", "run_id": "RUN1",
    }
    assert st.next_timer(tr.state) is None


def test_cancelling_an_ended_run_is_a_no_op() -> None:
    s = st.completed(st.begin(_started(), 11_000, finish_timeout_ms=None), "1", 12_000).state
    tr = st.cancel(s, "rest", None, 13_000)
    assert tr.state is None and not tr.system_events
    again = st.cancel(st.cancel(_started(), "rest", None, 1).state, "rest", None, 2)
    assert again.state is None and not again.system_events


def test_system_event_ids_are_deterministic() -> None:
    s = st.begin(_started(), 11_000, finish_timeout_ms=None)
    a = st.cancel(s, "rest", None, 13_000).system_events
    b = st.cancel(s, "rest", None, 99_000).system_events
    assert [e["id"] for e in a] == [e["id"] for e in b]
