"""step.wait_for_event's pure parts: the static scan of awaited events, the run state transitions, the join
(wait listeners beside cancel listeners of the same run), routing, and stale gate entries."""

from __future__ import annotations

import json

import pytest

import pipeline
from pipeline.canceller.index import Listener, Signal
from pipeline.protocol.joins import WaitNotRoutable, signal_routes, wait_listener
from pipeline.run_owner import state as st
from pipeline.run_owner.gate import GateBook
from pipeline.sdk.waits import DeclaredWait, declared_waits
from pipeline.workers.invoke import run_sync

from .fakes import cancel_index
from .test_run_state import EVENT, _apply, _running

client = pipeline.Inngest(app_id="unit")


@client.create_function(fn_id="approve", trigger=pipeline.TriggerEvent(event="doc/submitted"))
def approve(ctx: pipeline.ContextSync) -> object:
    got = ctx.step.wait_for_event("review", event="doc/reviewed", if_exp="async.data.importId == event.data.importId",
                                  timeout=60_000)
    return None if got is None else got.data


def test_awaited_events_are_found_in_the_module_source() -> None:
    found = declared_waits(approve.handler)
    assert DeclaredWait("doc/reviewed", "async.data.importId == event.data.importId") in found
    assert [w.join_path for w in approve.waits if w.event == "doc/reviewed"] == ["data.importId"]
    assert signal_routes([approve]) ["doc/reviewed"].paths == ("data.importId",)


def test_a_non_literal_event_name_is_refused_at_load_time(tmp_path: pytest.TempPathFactory) -> None:
    source = ("import pipeline\nc = pipeline.Inngest(app_id='x')\nname = 'a/b'\n"
              "@c.create_function(fn_id='f', trigger=pipeline.TriggerEvent(event='e'))\n"
              "def f(ctx):\n    return ctx.step.wait_for_event('w', event=name, timeout=1)\n")
    path = tmp_path / "dyn_wait_mod.py"  # type: ignore[operator]
    path.write_text(source)
    import importlib.util
    spec = importlib.util.spec_from_file_location("dyn_wait_mod", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    with pytest.raises(pipeline.DefinitionError, match="must be a string literal"):
        spec.loader.exec_module(module)  # type: ignore[union-attr]


def test_the_worker_reports_a_wait_with_its_condition_and_timeout() -> None:
    inv = {"run_id": "R", "function_id": approve.id, "seq": 1, "attempt": 0, "event": json.dumps(EVENT), "steps": []}
    out = run_sync(approve, inv, __import__("logging").getLogger("t"), now_ms=1_000)
    assert out["kind"] == "wait" and out["step_id"] == "review"
    assert json.loads(out["wait"]) == {"event": "doc/reviewed", "if": "async.data.importId == event.data.importId",
                                       "invoke": None}
    assert out["wake_at"] >= out["finished_at"] + 59_000
    inv["steps"] = [{"id": "review", "output": json.dumps({**EVENT, "name": "doc/reviewed"}), "error": None}]
    done = run_sync(approve, inv, __import__("logging").getLogger("t"))
    assert done["kind"] == "completed" and json.loads(done["output"]) == EVENT["data"]


def _waiting() -> dict:
    tr = _apply(_running(), "wait", step_id="review", wake_at=40_000,
                wait=json.dumps({"event": "doc/reviewed", "if": None}))
    assert tr.state is not None and tr.state["status"] == "Waiting" and not tr.ready
    return tr.state


def test_a_wait_resolves_once_with_the_event_and_a_late_resume_is_a_no_op() -> None:
    waiting = _waiting()
    assert json.loads(waiting["waiting_for"])["since"] == 11_900 and st.next_timer(waiting) == 40_000
    tr = st.resume(waiting, "review", '{"id":"E2"}', 13_000)
    assert tr.ready and tr.state is not None and tr.state["status"] == "Running"
    assert tr.state["steps"][-1] == {"id": "review", "op": "wait_for_event", "output": '{"id":"E2"}',
                                     "completed_at": 13_000, "started_at": None}
    assert st.resume(tr.state, "review", '{"id":"E3"}', 14_000).state is None
    assert st.resume(waiting, "other-step", '{"id":"E2"}', 13_000).state is None


def test_a_timeout_stays_waiting_until_the_gate_then_answers_null() -> None:
    waiting = _waiting()
    woke = st.wake(waiting, 40_005)
    assert woke.ready and woke.state is not None and woke.state["status"] == "Waiting"
    assert woke.state["ready_at"] == 40_000  # the gate must pass the timeout itself
    done = st.wait_timed_out(woke.state, 40_050).state
    assert done is not None and done["steps"][-1]["output"] == "null" and done["waiting_for"] is None
    cancelled = st.cancel(waiting, "api", None, 20_000)
    assert cancelled.ended and cancelled.state is not None and cancelled.state["status"] == "Cancelled"


def test_a_run_can_wait_and_listen_for_its_cancel_in_one_join_key() -> None:
    index = cancel_index(60_000)
    index.add_listener("k", Listener("R", "f", "T", 1_000, 90_000, None))
    index.add_listener("k", Listener("R", "f", "T", 5_000, 90_000, None, wait_step="review"))
    assert index.listener_count == 2
    matches = index.add_signal("k", Signal("E", 6_000, '{"id":"E"}'))
    assert sorted((m.ident, m.wait_step, m.event) for m in matches) == [
        ("R", None, None), ("R\x1ereview", "review", '{"id":"E"}')]
    index.remove_listener("k", "R\x1ereview")
    assert index.listener_count == 1


def test_a_signal_kept_from_before_the_listener_resolves_it_only_if_received_after_the_wait_began() -> None:
    index = cancel_index(60_000)
    index.add_signal("k", Signal("OLD", 4_000, "{}"))
    index.add_signal("k", Signal("NEW", 6_000, '{"id":"NEW"}'))
    matches = index.add_listener("k", Listener("R", "f", "T", 5_000, 90_000, None, wait_step="s"))
    assert [(m.event_id, m.event) for m in matches] == [("NEW", '{"id":"NEW"}')]


def test_wait_listeners_are_keyed_like_the_matcher_signals_them() -> None:
    listener = wait_listener(approve, EVENT, "R", "review", "doc/reviewed",
                             "async.data.importId == event.data.importId", 5_000, 9_000)
    assert listener is not None and listener["wait_step"] == "review" and listener["residual"] is None
    assert listener["join_key"].startswith("doc/reviewed") and "abc" in listener["join_key"]
    with pytest.raises(WaitNotRoutable, match="not found"):
        wait_listener(approve, EVENT, "R", "review", "never/declared", None, 5_000, 9_000)
    with pytest.raises(WaitNotRoutable, match="differs"):  # keyed by another path: the matcher has no route
        wait_listener(approve, EVENT, "R", "review", "doc/reviewed", "async.data.other == 1", 5_000, 9_000)


def test_a_stale_gate_entry_does_not_release_a_run_back_at_a_later_point() -> None:
    book = GateBook(max_wait_ms=60_000)
    book.add(0, 1_000, "R")
    book.add(0, 5_000, "R")  # resolved another way, then gated again later
    book.passed[0] = 2_000
    assert book.due({}, now=2_100) == []
    book.passed[0] = 5_000
    assert book.due({}, now=5_100) == [(0, "R", False)]


@client.create_function(fn_id="parent", trigger=pipeline.TriggerEvent(event="p"))
def parent(ctx: pipeline.ContextSync) -> object:
    return ctx.step.invoke("child", function=approve, data={"n": 1}, timeout=5_000)


def test_invoke_asks_for_the_child_and_reads_its_finished_event() -> None:
    log = __import__("logging").getLogger("t")
    inv = {"run_id": "R", "function_id": parent.id, "seq": 1, "attempt": 0, "event": json.dumps(EVENT), "steps": []}
    out = run_sync(parent, inv, log)
    wait = json.loads(out["wait"])
    assert out["kind"] == "wait" and wait["event"] == "inngest/function.finished"
    assert wait["invoke"] == {"function_id": approve.id, "data": {"n": 1}, "user": {}}
    assert parent.wait_paths("inngest/function.finished") == ("data.invoke_correlation_id",)
    finished = {"name": "inngest/function.finished", "data": {"result": {"ok": 1}}}
    inv["steps"] = [{"id": "child", "output": json.dumps(finished), "error": None}]
    assert json.loads(run_sync(parent, inv, log)["output"]) == {"ok": 1}
    failed = {"name": "inngest/function.finished", "data": {"error": {"name": "ValueError", "message": "m"}}}
    inv["steps"] = [{"id": "child", "output": json.dumps(failed), "error": None}]
    out = run_sync(parent, inv, log)
    assert out["kind"] == "error" and not out["retriable"] and json.loads(out["error"])["name"] == "ValueError"


def test_a_finished_child_carries_its_invoke_correlation_id() -> None:
    from pipeline.protocol.sysevents import function_finished

    invoked = {"id": "E", "name": "inngest/function.invoked", "data": {"_inngest": {"invoke_correlation_id": "R.s"}}}
    child = {"event": json.dumps(invoked), "function_id": "f", "run_id": "C", "queued_at": 1}
    assert json.loads(function_finished(child, 5, result_json="1")["data"])["invoke_correlation_id"] == "R.s"
    plain = dict(child, event=json.dumps(EVENT))
    assert "invoke_correlation_id" not in json.loads(function_finished(plain, 5, result_json="1")["data"])
