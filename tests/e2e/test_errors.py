"""inngest-py's error types end to end: RetryAfterError holds the next attempt back until the time it names,
instead of the owner's backoff (the stack's is 200 ms). The tests share the module's stack, each with its own
event ids."""

from __future__ import annotations

import json
import time

import pytest

from pipeline.testing.stack import Stack

pytestmark = pytest.mark.integration


def test_retry_after_error_delays_the_next_attempt_to_the_time_it_names(shared_stack: Stack) -> None:
    stack = shared_stack  # the module's: this test waits for its own runs
    stack.send("test/retry-after", {"after_ms": 2500}, id="ra-1")
    run = stack.wait_run(lambda r: r["event_id"] == "ra-1" and r["status"] == "Completed",
                         timeout=30)
    states = [s for s in stack.runs.records if s and s["run_id"] == run["run_id"]]  # type: ignore[union-attr]
    retried = [s for s in states if s["status"] == "Running" and s["attempt"] == 1 and s["wake_at"]]
    assert retried, "the failed attempt should have been scheduled for a retry"
    error = json.loads(retried[0]["error"])
    assert error["name"] == "RetryAfterError" and retried[0]["wake_at"] == error["retry_at"]
    assert run["output"] == "1"
    assert run["ended_at"] - run["started_at"] >= 2400, "the retry ran before the time RetryAfterError named"


def test_a_step_that_exhausts_its_retries_raises_step_error_which_the_handler_can_catch(
        shared_stack: Stack) -> None:
    stack = shared_stack  # the module's: this test waits for its own runs
    stack.send("test/step-error", {"catch": True}, id="se-caught")
    stack.send("test/step-error", {"catch": False}, id="se-uncaught")
    caught = stack.wait_run(lambda r: r["event_id"] == "se-caught" and r["status"] == "Completed", timeout=30)
    failed = stack.wait_run(lambda r: r["event_id"] == "se-uncaught" and r["status"] == "Failed", timeout=30)
    attempts = [s["attempt"] for s in stack.runs.records  # type: ignore[union-attr]
                if s and s["run_id"] == failed["run_id"]]
    assert json.loads(caught["output"]) == "recovered from ValueError: the payment API is down"
    charge = next(s for s in caught["steps"] if s["id"] == "charge")
    assert charge["op"] == "error" and json.loads(charge["output"])["name"] == "ValueError"
    assert json.loads(failed["error"])["name"] == "ValueError"  # the step's own error, not the wrapper
    assert max(attempts) <= 2, "an uncaught StepError must not retry the handler again"


def test_on_failure_runs_once_after_the_function_failed_for_good(shared_stack: Stack) -> None:
    stack = shared_stack  # the module's: this test waits for its own runs
    stack.send("test/doomed", {}, id="doomed-1")
    stack.send("test/wild.fine", {}, id="fine-1")  # another function's runs start no failure handler
    handler = stack.wait_run(lambda r: r["function_id"] == "e2e-doomed-failure" and r["status"] == "Completed",
                             timeout=30)
    stack.wait_run(lambda r: r["event_id"] == "fine-1" and r["status"] == "Completed", timeout=30)
    time.sleep(1)
    handlers = [r for r in stack.latest_runs().values() if r["function_id"] == "e2e-doomed-failure"]
    assert json.loads(handler["output"]) == "cleaned up doomed-1 after RuntimeError: no way"
    assert len(handlers) == 1


def test_async_handlers_get_retry_after_and_a_non_retriable_step_as_step_error(shared_stack: Stack) -> None:
    stack = shared_stack  # the module's: this test waits for its own runs
    stack.send("test/errors.async", {"retry_after_ms": 1500}, id="ea-1")
    run = stack.wait_run(lambda r: r["event_id"] == "ea-1" and r["status"] == "Completed", timeout=30)
    assert json.loads(run["output"]) == {"caught": "NonRetriableError", "message": "card declined", "attempt": 1}
    charge = next(s for s in run["steps"] if s["id"] == "charge")
    assert charge["op"] == "error"  # failed for good at once: NonRetriableError is not retried
    assert run["ended_at"] - run["started_at"] >= 1400, "the retry ran before the time RetryAfterError named"
