"""group.parallel's pure parts: planning against memoized steps, the worker's outcome, the owner's transition."""

from __future__ import annotations

import json
import logging

import pipeline
from pipeline.run_owner import state as st
from pipeline.workers.invoke import run_sync

from .test_run_state import EVENT, _apply, _running

client = pipeline.Inngest(app_id="unit-par")


@client.create_function(fn_id="par", trigger=pipeline.TriggerEvent(event="x"))
def par(ctx: pipeline.ContextSync) -> object:
    def boom() -> None:
        raise ValueError("b failed")
    return list(ctx.group.parallel((lambda: ctx.step.run("a", lambda: 1), lambda: ctx.step.run("b", boom),
                                    lambda: ctx.step.run("c", lambda: 3))))


@client.create_function(fn_id="par-sleep", trigger=pipeline.TriggerEvent(event="y"))
def par_sleep(ctx: pipeline.ContextSync) -> object:
    return ctx.group.parallel((lambda: ctx.step.sleep("nap", 10),))


def _inv(fn: pipeline.Function, steps: list[dict]) -> dict:
    return {"run_id": "R", "function_id": fn.id, "seq": 1, "attempt": 0, "event": json.dumps(EVENT), "steps": steps}


def test_new_steps_run_together_and_report_one_outcome_with_each_result() -> None:
    out = run_sync(par, _inv(par, [{"id": "a", "output": "1", "error": None}]), logging.getLogger("t"))
    assert out["kind"] == "steps"
    entries = json.loads(out["output"])
    assert [e["id"] for e in entries] == ["b", "c"]  # a was memoized
    assert entries[0]["error"]["message"] == "b failed" and entries[0]["retriable"]
    assert entries[1] == {"id": "c", "output": "3"}


def test_only_step_run_may_be_grouped() -> None:
    out = run_sync(par_sleep, _inv(par_sleep, []), logging.getLogger("t"))
    assert out["kind"] == "error" and not out["retriable"] and "step.sleep" in out["error"]


def test_the_owner_stores_every_success_and_retries_for_a_failure() -> None:
    entries = [{"id": "a", "output": "1"}, {"id": "b", "error": {"name": "ValueError", "message": "x"},
                                           "retriable": True}]
    tr = _apply(_running(), "steps", output=json.dumps(entries))
    assert tr.state is not None and [s["id"] for s in tr.state["steps"]] == ["a"]
    assert tr.state["attempt"] == 1 and tr.state["wake_at"] is not None and not tr.ready
    ok = _apply(_running(), "steps", output=json.dumps(entries[:1]))
    assert ok.ready and ok.state is not None and ok.state["attempt"] == 0


def test_a_step_failed_for_good_in_a_group_is_stored_as_its_error() -> None:
    entries = [{"id": "b", "error": {"name": "E", "message": "no"}, "retriable": False}]
    tr = _apply(_running(), "steps", output=json.dumps(entries))
    assert tr.ready and tr.state is not None and tr.state["steps"][-1]["op"] == st.STEP_ERROR
