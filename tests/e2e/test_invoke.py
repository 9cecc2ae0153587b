"""``step.invoke`` / ``invoke_by_id`` on a real broker: a child run with its own retries; its result comes
back, its failure raises StepError in the parent, and a timeout does too (sync and async).

The tests share the module's stack (``shared_stack``): each waits for its own runs, by event id or parent."""

from __future__ import annotations

import json

import pytest

from pipeline.testing.stack import Stack

pytestmark = pytest.mark.integration


def _done(stack: Stack, event_id: str) -> dict:
    return stack.wait_run(lambda r: r["event_id"] == event_id and r["status"] in ("Completed", "Failed"), timeout=60)


def _parent(run: dict) -> str | None:
    return json.loads(run["event"])["data"].get("_inngest", {}).get("parent_run_id")


def test_invoke_returns_the_child_result_and_its_failure_as_step_error(shared_stack: Stack) -> None:
    stack = shared_stack
    stack.send("test/invoke", {"n": 7, "think_ms": 500}, id="I1")
    stack.send("test/invoke", {"n": 3, "fail": True}, id="I2")
    ok, bad = _done(stack, "I1"), _done(stack, "I2")
    assert json.loads(ok["output"]) == {"squared": 49}
    assert json.loads(bad["output"]) == {"error": "ValueError", "message": "cannot square 3"}
    children = [r for r in stack.latest_runs().values() if r["function_id"] == "e2e-square"
                and _parent(r) in (ok["run_id"], bad["run_id"])]
    assert sorted(r["status"] for r in children) == ["Completed", "Failed"]
    child = next(r for r in children if r["status"] == "Completed")
    event = json.loads(child["event"])
    assert event["name"] == "inngest/function.invoked" and event["data"]["n"] == 7
    assert event["data"]["_inngest"]["parent_run_id"] == ok["run_id"]


def test_invoke_times_out_with_step_error(shared_stack: Stack) -> None:
    shared_stack.send("test/invoke", {"n": 2, "think_ms": 20_000, "timeout_ms": 1500}, id="I3")
    done = _done(shared_stack, "I3")
    assert json.loads(done["output"]) == {"error": "InngestInvokeTimeoutError",
                                          "message": "invoked function 'e2e-square' did not finish in time"}


def test_async_invoke_by_id(shared_stack: Stack) -> None:
    shared_stack.send("test/invoke.async", {"n": 5}, id="I4")
    assert json.loads(_done(shared_stack, "I4")["output"]) == {"squared": 25}
