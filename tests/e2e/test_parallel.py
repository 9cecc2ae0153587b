"""``ctx.group.parallel`` on a real broker: steps run side by side, each memoized; a retry after one step
failed runs only that step again (sync and async)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.testing.stack import Stack

pytestmark = pytest.mark.integration


def test_parallel_steps_overlap_and_a_retry_runs_only_the_failed_one(shared_stack: Stack, tmp_path: Path) -> None:
    log = tmp_path / "steps.log"
    shared_stack.send("test/parallel", {"log": str(log)}, id="P1")
    done = shared_stack.wait_run(lambda r: r["event_id"] == "P1" and r["status"] == "Completed", timeout=60)
    assert json.loads(done["output"]) == ["A", "B", "C", "done"]
    lines = [line.split() for line in log.read_text().splitlines()]
    starts = [(name, int(at)) for what, name, at in lines if what == "start"]
    assert sorted(name for name, _ in starts) == ["a", "b", "c", "c"]  # only c (failed once) ran twice
    first = [at for name, at in starts][:3]
    assert max(first) - min(first) < 800, starts  # the three began together, not one second apart
    assert [s["id"] for s in done["steps"]][-1] == "after"
    assert {s["id"] for s in done["steps"]} == {"a", "b", "c", "after"}


def test_async_parallel_steps_run_on_one_event_loop_side_by_side(shared_stack: Stack) -> None:
    shared_stack.send("test/parallel.async", {}, id="PA")
    done = shared_stack.wait_run(lambda r: r["event_id"] == "PA" and r["status"] == "Completed", timeout=60)
    assert json.loads(done["output"]) == ["xx", "yy", "zz"]
    steps = {s["id"]: s for s in done["steps"]}
    assert set(steps) == {"x", "y", "z"}
    assert len({s["completed_at"] for s in steps.values()}) == 1  # stored together, from one outcome
