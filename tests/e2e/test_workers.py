"""Steps side by side: workers run user code apart from the run owner (issue: steps run side by side).

Against a real broker: a slow step holds up no other run's cancel, wake-up or timeout; a cancel wins
over a handler that is still working; concurrency limits hold across two worker processes; async
handlers share one event loop.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest

from pipeline.testing.stack import Stack

from .apps import app
from .procs import service_process

pytestmark = pytest.mark.integration


def test_slow_steps_do_not_delay_another_runs_cancel_wake_up_or_timeout(kafka_bootstrap: str) -> None:
    with Stack(app, kafka_bootstrap) as stack:
        stack.send("test/long", {"key": "victim", "sleep": 120}, id="victim")
        stack.wait_run(lambda r: r["function_id"] == "e2e-long" and r["status"] == "Sleeping")
        for i in range(20):  # 20 steps of 4 s each, all running at once on the worker
            stack.send("test/io", {"seconds": 4}, id=f"io-{i}")
        stack.wait_run(lambda r: r["function_id"] == "e2e-io-step" and r["inflight_at"] is not None)
        sent = time.time()
        stack.send("test/sleep", {"seconds": 1}, id="napper")
        stack.send("test/timed", {}, id="timed")
        stack.send("test/cancel", {"key": "victim"}, id="cancel-victim")
        cancelled = stack.wait_run(lambda r: r["function_id"] == "e2e-long" and r["status"] == "Cancelled", timeout=10)
        cancel_latency = cancelled["ended_at"] / 1000 - sent
        woke = stack.wait_run(lambda r: r["function_id"] == "e2e-sleeper" and r["status"] == "Completed", timeout=10)
        timed_out = stack.wait_run(lambda r: r["function_id"] == "e2e-timed" and r["status"] == "Cancelled", timeout=10)
        still_running = [r for r in stack.latest_runs().values()
                         if r["function_id"] == "e2e-io-step" and r["status"] == "Running"]
        # The slow steps finish before the stack stops (test_a_stopped_worker_... covers a stop mid-step).
        deadline = time.monotonic() + 30
        while sum(r["function_id"] == "e2e-io-step" and r["status"] == "Completed"
                  for r in stack.latest_runs().values()) < 20:
            assert time.monotonic() < deadline, "the slow steps did not all complete"
            time.sleep(0.1)
    assert still_running, "the slow steps should still have been running"
    assert cancel_latency < 1.0, f"cancel took {cancel_latency:.2f}s behind slow steps"
    assert woke["ended_at"] / 1000 - sent < 3.0  # a 1 s sleep, not queued behind 4 s steps
    assert timed_out["cancel_reason"] == "timeout" and timed_out["ended_at"] / 1000 - sent < 4.0


def test_a_stopped_worker_hands_over_the_steps_still_running_before_it_goes(kafka_bootstrap: str) -> None:
    """SIGTERM (``stop``) waits for the steps in flight and their outcomes' acknowledgements, then commits: the
    outcomes reach the run owner and the stop takes the steps' time, not the 30 s drain limit."""
    with Stack(app, kafka_bootstrap) as stack:
        for i in range(3):
            stack.send("test/io", {"seconds": 2}, id=f"stop-io-{i}")
        deadline = time.monotonic() + 30
        while sum(r["function_id"] == "e2e-io-step" and r["inflight_at"] is not None
                  for r in stack.latest_runs().values()) < 3:
            assert time.monotonic() < deadline, "the steps never started"
            time.sleep(0.05)
        began = time.monotonic()
        stack.stop_service("worker")
        stopped_in = time.monotonic() - began
        for i in range(3):  # no worker left: only the outcomes handed over at the stop can end these runs
            done = stack.wait_run(lambda r, i=i: r["event_id"] == f"stop-io-{i}" and r["status"] == "Completed",
                                  timeout=15)
            assert [s["id"] for s in done["steps"]] == ["call"]
    assert stopped_in < 10, f"the worker's stop took {stopped_in:.1f} s"


def test_a_cancel_during_a_step_less_handler_ends_the_run_and_its_late_outcome_is_ignored(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    log = tmp_path / "stepless.log"
    with Stack(app, kafka_bootstrap) as stack:
        stack.send("test/stepless", {"key": "k1", "log": str(log)}, id="sl-1")
        stack.wait_run(lambda r: r["function_id"] == "e2e-stepless" and r["inflight_at"] is not None)
        stack.send("test/stepless.cancel", {"key": "k1"}, id="sl-cancel")
        run = stack.wait_run(lambda r: r["status"] == "Cancelled", timeout=10)
        assert not log.exists(), "the cancel should have applied while the handler was still working"
        deadline = time.monotonic() + 10
        while not log.exists():  # the handler finishes; its outcome reaches the owner and is dropped
            assert time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(1.5)
        final = stack.latest_runs()[run["run_id"]]
        cancelled = stack.system_events_named("inngest/function.cancelled")
        finished = stack.system_events_named("inngest/function.finished")
    assert final["status"] == "Cancelled" and final["output"] is None
    assert [e["data"]["run_id"] for e in cancelled] == [run["run_id"]]
    assert len(finished) == 1 and finished[0]["data"]["error"]["message"] == "function cancelled"


def _overlap(intervals: list[tuple[str, float, float]]) -> int:
    """The most intervals open at one moment (distinct runs), from the observed start and end times."""
    points = sorted([(s, 1, r) for r, s, _ in intervals] + [(e, -1, r) for r, _, e in intervals],
                    key=lambda p: (p[0], p[1]))
    open_runs: dict[str, int] = {}
    most = 0
    for _, delta, run in points:
        open_runs[run] = open_runs.get(run, 0) + delta
        if open_runs[run] == 0:
            del open_runs[run]
        most = max(most, len(open_runs))
    return most


def _intervals(log: Path) -> list[tuple[str, float, float]]:
    out = []
    for line in log.read_text().splitlines():
        run, start, end = line.split()
        out.append((run, float(start), float(end)))
    return out


def test_concurrency_limits_hold_across_two_worker_processes(kafka_bootstrap: str, tmp_path: Path) -> None:
    plain, keyed = tmp_path / "limited.log", tmp_path / "keyed.log"
    with Stack(app, kafka_bootstrap, services=("matcher", "run-owner", "canceller")) as stack:
        workers = [service_process(stack, "worker", f"w-{i}") for i in range(2)]
        try:
            for i in range(8):
                stack.send("test/limited", {"log": str(plain)}, id=f"lim-{i}")
            for i, account in zip(range(9), itertools.cycle(["a", "b", "c"])):
                stack.send("test/keyed", {"log": str(keyed), "account": account}, id=f"key-{i}")
            deadline = time.monotonic() + 90
            while sum(r["status"] == "Completed" for r in stack.latest_runs().values()) < 17:
                assert time.monotonic() < deadline, "not every limited run completed"
                time.sleep(0.2)
            waited = [r for r in stack.latest_runs().values() if r["function_id"] == "e2e-limited"]
        finally:
            for w in workers:
                w.terminate()
            for w in workers:
                w.wait(40)
    limited = _intervals(plain)
    assert len(limited) == 8 and _overlap(limited) == 2  # at the limit, never above it
    by_account: dict[str, list[tuple[str, float, float]]] = {}
    for run, start, end in _intervals(keyed):
        account = run.split("/")[0]
        by_account.setdefault(account, []).append((run, start, end))
    assert all(_overlap(iv) == 1 for iv in by_account.values())  # one at a time per account...
    assert _overlap(_intervals(keyed)) >= 2  # ...while different accounts run side by side
    assert all(r["concurrency_keys"] for r in waited)


def test_async_handlers_share_one_event_loop(kafka_bootstrap: str) -> None:
    with Stack(app, kafka_bootstrap) as stack:
        for i in range(3):
            stack.send("test/async-shared", {}, id=f"as-{i}")
        deadline = time.monotonic() + 30
        while sum(r["function_id"] == "e2e-async-shared" and r["status"] in ("Completed", "Failed")
                  for r in stack.latest_runs().values()) < 3:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        runs = [r for r in stack.latest_runs().values() if r["function_id"] == "e2e-async-shared"]
    assert [r["status"] for r in runs] == ["Completed"] * 3, [r["error"] for r in runs]
    loops = {v for r in runs for v in __import__("json").loads(r["output"])}
    assert len(loops) == 1


def test_a_wake_up_is_held_back_by_a_lagging_canceller_then_the_cancel_wins(kafka_bootstrap: str) -> None:
    """The watermark gate: the run's sleep ends while its cancel event sits unprocessed (the canceller is
    down). The run must not move on; once the canceller runs again, the cancel applies and the state says
    the run was held at the gate."""
    with Stack(app, kafka_bootstrap) as stack:
        stack.send("test/long", {"key": "held", "sleep": 2}, id="held-run")
        stack.wait_run(lambda r: r["function_id"] == "e2e-long" and r["status"] == "Sleeping")
        stack.stop_service("canceller")
        stack.send("test/cancel", {"key": "held"}, id="held-cancel")  # received before the wake time
        # past the wake time (the owner marks the run held): without the gate the run would complete now
        run = stack.wait_run(lambda r: r["function_id"] == "e2e-long" and r["held"] == "gate", timeout=20,
                             what="the run held at the gate")
        assert run["status"] == "Running" and run["held"] == "gate", run
        assert not stack.system_events_named("inngest/function.finished")
        stack.start_service("canceller")
        cancelled = stack.wait_run(lambda r: r["function_id"] == "e2e-long" and r["status"] == "Cancelled",
                                   timeout=20)
    assert cancelled["held"] == "gate" and cancelled["cancel_reason"] == "cancel_on"
    assert [s["id"] for s in cancelled["steps"]] == ["start", "wait"]  # the sleep ended; nothing after it ran


def test_a_held_run_goes_on_once_the_lagging_cancel_path_shows_no_cancel_for_it(kafka_bootstrap: str) -> None:
    with Stack(app, kafka_bootstrap) as stack:
        stack.send("test/long", {"key": "free", "sleep": 2}, id="free-run")
        stack.wait_run(lambda r: r["function_id"] == "e2e-long" and r["status"] == "Sleeping")
        stack.stop_service("canceller")
        stack.send("test/cancel", {"key": "someone-else"}, id="other-cancel")  # unprocessed: could be ours
        held = stack.wait_run(lambda r: r["function_id"] == "e2e-long" and r["held"] == "gate", timeout=20,
                              what="the run held at the gate")
        assert held["status"] == "Running"
        time.sleep(1)  # held for a while before the cancel path catches up (gate_wait_ms below)
        stack.start_service("canceller")
        done = stack.wait_run(lambda r: r["function_id"] == "e2e-long" and r["status"] == "Completed", timeout=20)
    assert done["gate_wait_ms"] >= 1000 and done["held"] is None
