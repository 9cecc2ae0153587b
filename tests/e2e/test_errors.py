"""inngest-py's error types end to end: RetryAfterError holds the next attempt back until the time it names,
instead of the owner's backoff (the stack's is 200 ms)."""

from __future__ import annotations

import json

import pytest

from pipeline.testing.stack import Stack

from .apps import app

pytestmark = pytest.mark.integration


def test_retry_after_error_delays_the_next_attempt_to_the_time_it_names(kafka_bootstrap: str) -> None:
    with Stack(app, kafka_bootstrap) as stack:
        stack.send("test/retry-after", {"after_ms": 2500}, id="ra-1")
        run = stack.wait_run(lambda r: r["function_id"] == "e2e-retry-after" and r["status"] == "Completed",
                             timeout=30)
        states = [s for s in stack.runs.records if s and s["run_id"] == run["run_id"]]  # type: ignore[union-attr]
    retried = [s for s in states if s["status"] == "Running" and s["attempt"] == 1 and s["wake_at"]]
    assert retried, "the failed attempt should have been scheduled for a retry"
    error = json.loads(retried[0]["error"])
    assert error["name"] == "RetryAfterError" and retried[0]["wake_at"] == error["retry_at"]
    assert run["output"] == "1"
    assert run["ended_at"] - run["started_at"] >= 2400, "the retry ran before the time RetryAfterError named"
