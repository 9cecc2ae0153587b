"""Priority against a real broker (issue 21): with concurrency 1, a +600 s run jumps the five runs waiting for the
slot, and the order survives a run-owner SIGKILL (the queue is rebuilt from the run table by rank)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from pipeline.testing.stack import Stack
from tests.e2e.procs import service_process

from .flow_apps import app

pytestmark = pytest.mark.integration
APP = "tests.integration.flow_apps:app"


@pytest.mark.parametrize("kill", [False, True], ids=["steady", "owner-killed-while-they-wait"])
def test_a_plus_600_run_jumps_five_waiting_runs(kafka_bootstrap: str, tmp_path: Path, kill: bool) -> None:
    log = tmp_path / "order.log"
    with Stack(app, kafka_bootstrap, services=("matcher", "canceller", "worker")) as stack:
        owner = service_process(stack, "run-owner", "own-1", app=APP)
        try:
            stack.send("flow/ordered", {"n": "first", "priority": 0, "log": str(log), "hold": 5}, id="pr-first")
            stack.wait_run(lambda r: r["event_id"] == "pr-first" and r["inflight_at"] is not None, timeout=60)
            for n in range(1, 6):
                stack.send("flow/ordered", {"n": str(n), "priority": 0, "log": str(log)}, id=f"pr-{n}")
                time.sleep(0.1)
            stack.send("flow/ordered", {"n": "vip", "priority": 600, "log": str(log)}, id="pr-vip")
            stack.wait_run(lambda r: r["event_id"] == "pr-vip" and r["held"] == "concurrency", timeout=30)
            if kill:
                owner.send_signal(signal.SIGKILL)
                owner.wait(10)
                owner = service_process(stack, "run-owner", "own-1", app=APP)
            deadline = time.monotonic() + 120
            while sum(r["function_id"] == "flow-ordered" and r["status"] == "Completed"
                      for r in stack.latest_runs().values()) < 7:
                assert time.monotonic() < deadline, stack.snapshot()
                time.sleep(0.2)
            runs = {r["event_id"]: r for r in stack.latest_runs().values() if r["function_id"] == "flow-ordered"}
        finally:
            owner.send_signal(signal.SIGTERM)
            owner.wait(30)
    order = log.read_text().split()
    waiting = sorted((f"pr-{n}" for n in range(1, 6)), key=lambda e: runs[e]["queued_at"])
    assert order[:2] == ["first", "vip"], order
    assert [f"pr-{n}" for n in order[2:]] == waiting  # the others keep their order of arrival
