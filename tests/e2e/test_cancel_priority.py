"""A cancel sent right behind a burst of events overtakes the burst (pipeline/kafka/lookahead.py): it is applied
while the owner still has the burst's starts to process, not after them, and the burst itself is processed
completely and exactly once (real broker, every service)."""

from __future__ import annotations

import time

import pytest

from pipeline.testing.stack import Stack

from .apps import app

pytestmark = pytest.mark.integration

BURST = 3000


def test_a_cancel_behind_a_burst_is_applied_before_the_burst_is_started(kafka_bootstrap: str) -> None:
    with Stack(app, kafka_bootstrap) as stack:
        stack.send("test/long", {"key": "k-priority", "sleep": 600}, id="long-priority")
        stack.wait_run(lambda r: r["function_id"].endswith("-long") and r["status"] == "Sleeping", timeout=60,
                       what="the long run asleep")
        for i in range(BURST):  # one producer batch: the cancel is the last record, behind all of them
            stack.send("test/wild.burst", {"i": i}, id=f"burst-{i}", flush=False)
        stack.send("test/cancel", {"key": "k-priority"}, id="cancel-priority", flush=False)
        stack.flush()
        cancelled = stack.wait_run(lambda r: r["function_id"].endswith("-long") and r["status"] == "Cancelled",
                                   timeout=90, what="the long run cancelled")
        deadline = time.monotonic() + 120
        while len(burst := [s for s in stack.latest_runs().values() if s["event_id"].startswith("burst-")]) < BURST:
            assert time.monotonic() < deadline, f"{len(burst)} of {BURST} runs of the burst started"
            time.sleep(0.2)
    starts = sorted(s["queued_at"] for s in burst)
    assert len(burst) == BURST  # nothing lost, nothing doubled: one run per event
    started_before = sum(1 for q in starts if q <= cancelled["ended_at"])
    # In order, the cancel would come after all 3,000 starts; it jumped the backlog in the matcher and the owner.
    assert cancelled["ended_at"] < starts[-1] and started_before < BURST * 0.9, (started_before, BURST)
