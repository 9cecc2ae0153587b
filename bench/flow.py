"""Flow control (issue 21): debounce firing accuracy, throttle pacing error and batch throughput, each against the
same function without the option, in one run.

Run (from the repository root):

    PYTHONPATH=. python bench/flow.py                       # ~1 minute
    PYTHONPATH=. python bench/flow.py --keys 200 --events 20000

The services run as ``pipeline dev`` runs them: the matcher, run owner, canceller and one worker each in its own
process (``pipeline run``), on the bench's broker; the bench reads ``runs`` (read_committed) in this process.

1. Debounce accuracy: ``--keys`` keys, 10 ms apart, get 3 events each at once (newer ``ts`` each), for a function with
   ``Debounce(period=1s, key=event.data.key)``. A key's deadline is its winning (last) event's receive time (the
   broker's LogAppendTime, the run's ``received_at``) + 1 s; the run's start is its ``queued_at`` (when the owner
   started it). Accuracy = start - deadline, ms. Baseline: the same events to a function without debounce, whose
   start delay is ``queued_at - received_at``: what any run pays between the broker and the owner's start.
2. Throttle pacing error: ``bench/flow_throttle.py``'s measure (its docstring says how), on the same broker.
3. Batch throughput: ``--events`` events at once to a function with ``Batch(max_size=100, timeout=1s)``, and the
   same number to the function without it. Events/s = events / (first produce -> every event in a completed run).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import broker, console, emit, percentile, results_table
from bench.flow_app import app
from bench.flow_throttle import measure as throttle_pacing
from pipeline.testing.stack import Stack

ROOT = Path(__file__).resolve().parents[1]
APP = "bench.flow_app:app"


def _services(stack: Stack) -> list[subprocess.Popen[bytes]]:
    procs = []
    for name in ("matcher", "run-owner", "canceller", "worker"):
        env = stack.env(PYTHONPATH=str(ROOT), PIPELINE_INSTANCE_ID=f"bench-{name}")
        args = [sys.executable, "-m", "pipeline.cli", "run", name]
        if name != "canceller":
            args += ["--app", APP]
        procs.append(subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return procs


def _runs(stack: Stack, function_id: str) -> list[dict[str, Any]]:
    return [r for r in stack.latest_runs().values() if r["function_id"] == function_id]


def _wait(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


def debounce_accuracy(stack: Stack, keys: int) -> dict[str, float]:
    for k in range(keys):  # keys 10 ms apart, so their deadlines spread over a second and more
        now = int(time.time() * 1000)
        for i in range(3):
            stack.send("bench/debounce", {"key": k}, id=f"d{k}-{i}", ts=now + i, flush=False)
            stack.send("bench/plain", {"key": k}, id=f"p{k}-{i}", ts=now + i, flush=False)
        stack.flush()
        time.sleep(0.01)
    debounced = _wait(lambda: (lambda rs: rs if len(rs) >= keys else None)(
        [r for r in _runs(stack, "benchflow-debounced") if r["status"] == "Completed"]), 120, "the debounced runs")
    plain = _wait(lambda: (lambda rs: rs if len(rs) >= 3 * keys else None)(
        [r for r in _runs(stack, "benchflow-plain") if r["status"] == "Completed"]), 120, "the plain runs")
    late = [float(r["queued_at"] - (r["received_at"] + 1000)) for r in debounced]
    start = [float(r["queued_at"] - r["received_at"]) for r in plain]
    wrong = [r for r in debounced if not r["event_id"].endswith("-2")]
    return {"debounce_late_p50_ms": percentile(late, 50), "debounce_late_p99_ms": percentile(late, 99),
            "debounce_late_min_ms": min(late), "plain_start_p50_ms": percentile(start, 50),
            "plain_start_p99_ms": percentile(start, 99), "debounce_runs": len(debounced),
            "debounce_wrong_event": len(wrong)}


def batch_throughput(stack: Stack, events: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, fn in (("batch", "benchflow-batched"), ("plain", "benchflow-plain")):
        before = {r["run_id"] for r in _runs(stack, fn)}
        started = time.monotonic()
        for i in range(events):
            stack.send(f"bench/{name}", {"i": i}, id=f"{name}-t-{i}", flush=False)
        stack.flush()

        def done(fn: str = fn, before: set[str] = before) -> list[dict[str, Any]] | None:
            runs = [r for r in _runs(stack, fn) if r["run_id"] not in before and r["status"] == "Completed"]
            return runs if sum(int(r["output"]) for r in runs) >= events else None

        runs = _wait(done, 600, f"{events} {name} events in completed runs")
        took = time.monotonic() - started
        out[f"{name}_events_per_s"] = round(events / took, 1)
        out[f"{name}_runs"] = len(runs)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=100, help="debounce keys (3 events each)")
    parser.add_argument("--events", type=int, default=5000, help="events for the batch throughput")
    parser.add_argument("--throttle-runs", type=int, default=200,
                        help="runs of the throttled function (and of its twin)")
    args = parser.parse_args()
    throttle_args = argparse.Namespace(runs=args.throttle_runs, limit=20, period_ms=1000, burst=1, timeout=120.0)
    with broker("flow") as servers, Stack(app, servers, services=()) as stack:
        procs = _services(stack)
        try:
            stack.send("bench/plain", {}, id="warm")
            _wait(lambda: [r for r in _runs(stack, "benchflow-plain") if r["status"] == "Completed"], 120,
                  "the services to be up")
            figures = debounce_accuracy(stack, args.keys)
            figures.update(batch_throughput(stack, args.events))
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
        throttle = throttle_pacing(servers, throttle_args)
    errors, free = throttle["pacing_error_ms"], throttle["free_start_delay_ms"]
    console.print(results_table("flow control", [
        ("debounce start after deadline p50", f"{figures['debounce_late_p50_ms']:.0f} ms",
         f"p99 {figures['debounce_late_p99_ms']:.0f} ms, min {figures['debounce_late_min_ms']:.0f} ms"),
        ("plain start after receive p50", f"{figures['plain_start_p50_ms']:.0f} ms",
         f"p99 {figures['plain_start_p99_ms']:.0f} ms (same events, no debounce)"),
        ("throttle (20/s, burst 1) pacing error p50", f"{errors['p50']:.0f} ms",
         f"p99 {errors['p99']:.0f} ms, early {throttle['early']} (must be 0), "
         f"{throttle['paced_rate_per_s']}/s achieved"),
        ("plain start after receive p50 (throttle's twin)", f"{free['p50']:.0f} ms", f"p99 {free['p99']:.0f} ms"),
        ("batch (max_size 100)", f"{figures['batch_events_per_s']:,.0f} events/s", f"{figures['batch_runs']} runs"),
        ("plain", f"{figures['plain_events_per_s']:,.0f} events/s", f"{figures['plain_runs']} runs"),
    ]))
    emit("flow", {"keys": args.keys, "events": args.events, **figures, "throttle": throttle})


if __name__ == "__main__":
    main()
