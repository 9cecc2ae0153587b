"""Run state transitions (pure): start, dispatch, outcomes, sleep/wake, retries, finishing, cancellation,
plus the owner's concurrency slots and the watermark gate's book-keeping."""

from __future__ import annotations

import json
from collections import deque

from pipeline.protocol.commands import start_command
from pipeline.protocol.sysevents import FUNCTION_CANCELLED, FUNCTION_FAILED, FUNCTION_FINISHED
from pipeline.run_owner import state as st
from pipeline.run_owner.gate import GateBook
from pipeline.run_owner.slots import Slots
from pipeline.serde import RUN_STATE, STEP_OUTCOME, Serde

EVENT = {"data": {"importId": "abc"}, "id": "01EV", "name": "contacts/import.requested", "ts": 1000, "user": {}}


def _started(now: int = 10_000, start_timeout: int | None = None, slots: list[str] | None = None) -> dict:
    cmd = start_command("RUN1", "app-fn", json.dumps(EVENT), 9_000, now)
    tr = st.start(cmd, EVENT["id"], now, start_timeout_ms=start_timeout, slot_keys=slots)
    assert tr.state is not None and tr.ready
    return tr.state


def _running(now: int = 11_000, finish_timeout: int | None = None) -> dict:
    return st.dispatch(_started(), now, finish_timeout_ms=finish_timeout)


def _outcome(state: dict, kind: str, **fields: object) -> dict:
    base = {"run_id": state["run_id"], "function_id": state["function_id"], "seq": state["seq"],
            "attempt": state["attempt"], "kind": kind, "step_id": None, "output": None, "wake_at": None,
            "events": None, "error": None, "retriable": True, "started_at": 11_500, "finished_at": 11_900,
            "worker": "w", "wait": None, "final": None, "sleep_step": None, "sleep_ms": None}
    base.update(fields)
    return base


def _apply(state: dict, kind: str, now: int = 12_000, retries: int = 2, **fields: object) -> st.Transition:
    out = _outcome(state, kind, **fields)
    assert st.is_current(state, out)
    return st.apply_outcome(state, out, now, retries=retries, backoff_ms=100)


def test_start_makes_a_queued_run_ready_for_its_first_invocation_without_a_gate() -> None:
    s = _started(start_timeout=5_000)
    assert s["status"] == "Queued" and s["received_at"] == 9_000 and s["deadline_at"] == 15_000
    assert s["ready_at"] == 10_000 and s["seq"] == 0 and not st.needs_gate(s)


def test_dispatch_starts_the_run_marks_the_invocation_in_flight_and_builds_it() -> None:
    s = st.dispatch(_started(start_timeout=5_000), 11_000, finish_timeout_ms=60_000)
    assert s["status"] == "Running" and s["started_at"] == 11_000 and s["deadline_at"] == 71_000
    assert s["seq"] == 1 and s["inflight_at"] == 11_000 and s["ready_at"] is None
    inv = st.invocation(s, 2, 11_000)
    assert inv["seq"] == 1 and inv["owner_partition"] == 2 and inv["steps"] == [] and inv["event"] == s["event"]


def test_a_step_outcome_is_stored_and_the_run_waits_at_the_gate_for_the_next_one() -> None:
    s = _running()
    tr = _apply(s, "step", step_id="load", output="[1,2]")
    new = tr.state
    assert tr.ready and new["inflight_at"] is None and new["ready_at"] == 12_000 and st.needs_gate(new)
    assert new["steps"] == [{"id": "load", "op": "run", "output": "[1,2]", "completed_at": 12_000,
                             "started_at": 11_500}]
    assert st.invocation(st.dispatch(new, 12_001, finish_timeout_ms=None), 0, 1)["steps"] == [
        {"id": "load", "output": "[1,2]", "error": None}]


def test_stale_duplicate_and_late_outcomes_are_not_current() -> None:
    s = _running()
    out = _outcome(s, "step", step_id="a", output="1")
    assert st.is_current(s, out)
    after = _apply(s, "step", step_id="a", output="1").state
    assert not st.is_current(after, out)  # the duplicate: nothing in flight any more
    again = st.dispatch(after, 13_000, finish_timeout_ms=None)
    assert not st.is_current(again, out)  # an old seq
    assert not st.is_current(again, dict(_outcome(again, "step"), attempt=5))  # another attempt
    cancelled = st.cancel(again, "rest", None, 14_000).state
    assert not st.is_current(cancelled, _outcome(again, "completed", output="1"))  # the run has ended


def test_sleep_then_wake_records_the_sleep_step_at_the_wake_time() -> None:
    tr = _apply(_running(), "sleep", step_id="pause", wake_at=20_000)
    assert tr.state["status"] == "Sleeping" and tr.state["wake_at"] == 20_000 and not tr.ready
    assert st.next_timer(tr.state) == 20_000
    assert st.wake(tr.state, 19_999).state is None  # too early: nothing happens
    woke = st.wake(tr.state, 20_050)
    assert woke.ready and woke.state["status"] == "Running" and woke.state["wake_at"] is None
    assert woke.state["ready_at"] == 20_000  # the gate must cover cancels received before the wake time
    assert woke.state["steps"][-1]["id"] == "pause" and woke.state["steps"][-1]["op"] == "sleep"


def test_sleep_in_the_past_completes_at_once() -> None:
    tr = _apply(_running(), "sleep", step_id="pause", wake_at=5_000)
    assert tr.state["status"] == "Running" and tr.ready


def test_retries_back_off_then_finish_as_failed_with_failed_and_finished() -> None:
    err = json.dumps({"error": "boom", "message": "boom", "name": "RuntimeError"})
    tr = _apply(_running(), "error", now=12_000, error=err)
    assert tr.state["attempt"] == 1 and tr.state["wake_at"] == 12_100 and not tr.ready
    retry = st.wake(tr.state, 12_100)
    assert retry.ready and retry.state["ready_at"] == 12_100
    tr2 = _apply(st.dispatch(retry.state, 12_101, finish_timeout_ms=None), "error", now=13_000, error=err)
    assert tr2.state["attempt"] == 2 and tr2.state["wake_at"] == 13_200
    last = _apply(st.dispatch(st.wake(tr2.state, 13_200).state, 13_201, finish_timeout_ms=None), "error",
                  now=14_000, error=err)
    assert last.ready and last.state["finishing"] == "Failed" and last.state["status"] == "Running"
    final = st.finish(last.state, 14_010)
    assert final.state["status"] == "Failed" and final.ended
    assert [e["name"] for e in final.system_events] == [FUNCTION_FAILED, FUNCTION_FINISHED]
    assert json.loads(final.system_events[0]["data"])["error"] == json.loads(err)


def test_non_retriable_error_finishes_at_once() -> None:
    tr = _apply(_running(), "error", retries=3, error='{"error":"x","message":"x","name":"E"}', retriable=False)
    assert tr.state["finishing"] == "Failed"


def test_completion_waits_at_the_gate_then_sends_finished_with_result() -> None:
    tr = _apply(_running(), "completed", output='{"saved": 3}')
    assert tr.ready and tr.state["finishing"] == "Completed" and st.needs_gate(tr.state)
    done = st.finish(tr.state, 12_500)
    assert done.state["status"] == "Completed" and done.ended
    (fin,) = done.system_events
    assert fin["name"] == FUNCTION_FINISHED and json.loads(fin["data"])["result"] == {"saved": 3}


def test_a_cancel_at_the_gate_wins_over_the_pending_end_and_says_it_was_held() -> None:
    finishing = _apply(_running(), "completed", output='"done"').state
    held = st.hold(finishing, st.GATE, 12_001)
    tr = st.cancel(held, "cancel_on", "01CANCEL", 12_300)
    assert tr.state["status"] == "Cancelled" and tr.state["held"] == st.GATE and tr.state["finishing"] is None
    assert [e["name"] for e in tr.system_events] == [FUNCTION_CANCELLED, FUNCTION_FINISHED]


def test_cancel_sends_cancelled_field_for_field_and_finished_but_not_failed() -> None:
    s = _apply(_running(), "sleep", step_id="pause", wake_at=99_000).state
    tr = st.cancel(s, "cancel_on", "01CANCEL", 13_000)
    assert tr.state["status"] == "Cancelled" and tr.state["wake_at"] is None and tr.ended
    assert [e["name"] for e in tr.system_events] == [FUNCTION_CANCELLED, FUNCTION_FINISHED]
    cancelled = tr.system_events[0]
    assert cancelled["id"] == "RUN1"
    assert json.loads(cancelled["data"]) == {
        "error": {"error": "function cancelled", "message": "function cancelled", "name": "Error"},
        "event": EVENT, "events": [EVENT], "function_id": "app-fn", "run_id": "RUN1",
    }
    assert st.next_timer(tr.state) is None


def test_a_cancel_with_a_step_in_flight_ends_the_run_at_once() -> None:
    tr = st.cancel(_running(), "rest", None, 11_100)
    assert tr.ended and tr.state["inflight_at"] is None and tr.state["status"] == "Cancelled"


def test_cancelling_an_ended_run_is_a_no_op() -> None:
    s = st.finish(_apply(_running(), "completed", output="1").state, 12_000).state
    tr = st.cancel(s, "rest", None, 13_000)
    assert tr.state is None and not tr.system_events
    again = st.cancel(st.cancel(_started(), "rest", None, 1).state, "rest", None, 2)
    assert again.state is None and not again.system_events


def test_system_event_ids_are_deterministic() -> None:
    s = _running()
    a = st.cancel(s, "rest", None, 13_000).system_events
    b = st.cancel(s, "rest", None, 99_000).system_events
    assert [e["id"] for e in a] == [e["id"] for e in b]


def test_slot_holding_follows_the_state() -> None:
    s = _started(slots=["fn\x1f0"])
    assert not st.holds_slot(s)
    gated = st.hold(s, st.GATE, 1)
    assert st.holds_slot(gated)
    flying = st.dispatch(s, 2, finish_timeout_ms=None)
    assert st.holds_slot(flying)
    assert not st.holds_slot(st.cancel(flying, "rest", None, 3).state)
    assert not st.holds_slot(_apply(flying, "completed", output="1").state)


def test_states_round_trip_through_avro_and_old_states_read_with_defaults() -> None:
    serde = Serde()
    s = _apply(_running(), "step", step_id="a", output="1").state
    assert serde.decode_as(RUN_STATE, serde.encode(RUN_STATE, s)) == s
    out = _outcome(s, "send", events='[{"name": "x"}]')
    assert serde.decode_as(STEP_OUTCOME, serde.encode(STEP_OUTCOME, out)) == out


def test_slots_count_exactly_and_queue_first_come_first_served() -> None:
    slots = Slots()
    keys, limits = ["f\x1f0\x1f\"a\""], [2]
    assert slots.blocked_by(keys, limits) is None
    slots.take(keys)
    slots.take(keys)
    assert slots.blocked_by(keys, limits) == keys[0]
    slots.wait(keys[0], "r3")
    slots.wait(keys[0], "r4")
    slots.forget("r3")
    slots.give_back(keys)
    assert slots.blocked_by(keys, limits) is None and slots.next_waiting(keys[0]) == "r4"
    assert slots.next_waiting(keys[0]) is None and slots.waiting_count() == 0


def test_gate_book_releases_runs_only_when_a_round_covers_them_and_the_owner_caught_up() -> None:
    book = GateBook(max_wait_ms=60_000)
    book.add(0, 1_000, "early")
    book.add(0, 2_000, "late")
    book.add(1, 1_000, "other")
    rounds = deque([(1_500, {0: 10, 1: 7})])
    book.take_rounds(rounds)
    assert book.due({0: 9, 1: 7}, now=1_600) == [(1, "other", False)]  # partition 0 has not read offset 9 yet
    assert book.due({0: 10, 1: 7}, now=1_700) == [(0, "early", False)]  # "late" is after the round's t0
    assert book.due({0: 10}, now=61_999) == []
    assert book.due({0: 10}, now=62_000) == [(0, "late", True)]  # past the maximum wait: goes on, flagged
    assert len(book) == 0


def test_a_step_outcome_with_the_handlers_result_finishes_the_run_without_another_invocation() -> None:
    tr = _apply(_running(), "step", step_id="a", output="1", final='{"ok":true}')
    assert tr.ready and tr.state is not None and tr.state["finishing"] == "Completed"
    assert tr.state["output"] == '{"ok":true}' and tr.state["steps"][-1]["id"] == "a"
    done = st.finish(tr.state, 13_000)
    assert done.ended and done.state is not None and done.state["status"] == "Completed"


def test_a_step_outcome_with_the_sleep_that_follows_puts_the_run_to_sleep_without_another_invocation() -> None:
    s = _running()
    tr = _apply(s, "step", step_id="a", output="1", sleep_step="nap", sleep_ms=48_000)  # applied at 12,000
    assert not tr.ready and tr.state is not None and not tr.ended
    new = tr.state
    assert (new["status"], new["wake_at"], new["pending_step"]) == ("Sleeping", 60_000, "nap")
    assert [step["id"] for step in new["steps"]] == ["a"] and new["attempt"] == 0
    assert new["inflight_at"] is None and new["ready_at"] is None and new["held"] is None
    assert new["seq"] == s["seq"] and st.next_timer(new) == 60_000
    # the wake-up is a point like any sleep's: it passes the gate (ready_at is the wake time) and stores the sleep
    woke = st.wake(new, 60_010)
    assert woke.ready and woke.state is not None and woke.state["ready_at"] == 60_000 and st.needs_gate(woke.state)
    assert [step["id"] for step in woke.state["steps"]] == ["a", "nap"]
    # a cancel while it sleeps ends it at once; the sleep's outcome, applied after a cancel, is stale
    assert st.cancel(new, "event", "C1", 20_000).ended
    assert not st.is_current(st.cancel(s, "event", "C1", 11_950).state, _outcome(s, "step", sleep_step="nap"))
    # a sleep already due when the outcome lands: the run is ready for its next invocation at once
    due = _apply(s, "step", step_id="a", output="1", sleep_step="nap", sleep_ms=0)
    assert due.ready and due.state is not None and [x["id"] for x in due.state["steps"]] == ["a", "nap"]


def test_a_send_outcome_stores_the_sent_ids_and_its_events_have_deterministic_ids() -> None:
    s = _running()
    sent = [{"name": "a/b", "data": {"x": 1}}, {"name": "a/c", "id": "mine"}]
    tr = _apply(s, "send", step_id="notify", events=json.dumps(sent))
    again = _apply(s, "send", step_id="notify", events=json.dumps(sent))
    assert tr.state is not None and tr.ready
    ids = [e["id"] for e in tr.user_events]
    assert ids[1] == "mine" and ids == [e["id"] for e in again.user_events]  # a retried step: the same ids
    assert tr.state["steps"][-1]["op"] == "send_event" and json.loads(tr.state["steps"][-1]["output"]) == ids
    assert tr.user_events[0]["data"] == {"x": 1} and tr.user_events[0]["ts"] == 12_000
