"""Throttle pacing error: how late each throttled run starts after the earliest time its throttle allowed, against
the start delay of the same function without a throttle, in one run.

Run (from the repository root):

    PYTHONPATH=. python bench/flow_throttle.py                       # 200 runs each, limit 20 per 1 s, ~15 s
    PYTHONPATH=. python bench/flow_throttle.py --runs 300 --limit 10 --period-ms 1000 --burst 1

A Stack (matcher, run owner, canceller, worker in threads of this process, as ``pipeline dev`` runs them) serves
two functions with the same one-step handler: ``paced`` with ``Throttle(limit, period, burst)`` and ``free``
without. ``--runs`` events for each are produced at once. From the runs topic (each run's ``queued_at`` and
``started_at``, the owner's clock):

* **pacing error** of start i of ``paced`` (in start order) = its start minus the earliest time the GCRA allowed it
  given the starts before it and its own scheduling time (``pipeline/run_owner/pacing.py`` replayed on the actual
  starts). Never negative unless a start came early (counted as ``early``, must be 0);
* **start delay** of ``free`` = start minus the event's receive time (the broker's): what the runtime adds to any
  start, throttle or not;
* the achieved start rate of ``paced`` after its burst, against ``limit / period``.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import time
from collections.abc import Callable
from typing import Any

import _common as c

import pipeline
from pipeline.run_owner.pacing import Pace
from pipeline.testing.stack import Stack


def build_app(limit: int, period_ms: int, burst: int) -> pipeline.Inngest:
    app = pipeline.Inngest(app_id="bench-flow")

    def handler(ctx: pipeline.Context) -> Any:
        return ctx.step.run("work", lambda: "ok")

    app.create_function(fn_id="paced", trigger=pipeline.TriggerEvent(event="bench/paced"),
                        throttle=pipeline.Throttle(limit=limit, period=datetime.timedelta(milliseconds=period_ms),
                                                   burst=burst))(handler)
    app.create_function(fn_id="free", trigger=pipeline.TriggerEvent(event="bench/free"))(handler)
    return app


def pacing_errors(pace: Pace, runs: list[dict[str, Any]]) -> list[int]:
    """Per start, in start order: the start minus the earliest time the rule allowed it (see the module)."""
    errors, state = [], None
    for run in sorted(runs, key=lambda r: (r["started_at"], r["run_id"])):
        allowed = pace.allowed_at(state, run["queued_at"])
        errors.append(run["started_at"] - allowed)
        state = pace.started(state, run["started_at"])
    return errors


def completed(event_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda r: r["event_id"] == event_id and r["status"] == "Completed"


def stats(values: list[float]) -> dict[str, float]:
    return {"p50": c.percentile(values, 50), "p99": c.percentile(values, 99), "max": max(values)}


def measure(servers: str, args: argparse.Namespace) -> dict[str, Any]:
    app = build_app(args.limit, args.period_ms, args.burst)
    pace = Pace(limit=args.limit, period_ms=args.period_ms, burst=args.burst)
    expected_s = max(0, args.runs - args.limit - args.burst) * pace.emission / 1000  # limit + burst at once
    with Stack(app, servers) as stack:
        for name in ("paced", "free"):  # warm: every service has joined and served one run of each
            warm = stack.send(f"bench/{name}", {}, id=f"warm-{name}")
            stack.wait_run(completed(warm), timeout=120)
        time.sleep(pace.period_ms / 1000)  # the warm-up's token is back
        for i in range(args.runs):
            stack.send("bench/paced", {"i": i}, id=f"paced-{i}", flush=False)
            stack.send("bench/free", {"i": i}, id=f"free-{i}", flush=False)
        stack.flush()
        deadline = time.monotonic() + expected_s + args.timeout
        while True:
            runs = list(stack.latest_runs().values())
            runs = [r for r in runs if not r["event_id"].startswith("warm-")]
            if sum(r["status"] == "Completed" for r in runs) >= 2 * args.runs:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out: {stack.snapshot()}")
            time.sleep(0.2)
    paced = [r for r in runs if r["function_id"] == "bench-flow-paced"]
    free = [r for r in runs if r["function_id"] == "bench-flow-free"]
    errors = pacing_errors(pace, paced)
    starts = sorted(r["started_at"] for r in paced)
    tail = starts[args.limit + args.burst:]
    achieved = (len(tail) - 1) / ((tail[-1] - tail[0]) / 1000) if len(tail) > 1 and tail[-1] > tail[0] else 0.0
    return {"runs": args.runs, "limit": args.limit, "period_ms": args.period_ms, "burst": args.burst,
            "pacing_error_ms": stats([float(e) for e in errors]), "early": sum(e < 0 for e in errors),
            "free_start_delay_ms": stats([float(r["started_at"] - r["received_at"]) for r in free]),
            "paced_first_start_delay_ms": min(r["started_at"] for r in paced) - min(r["received_at"] for r in paced),
            "paced_rate_per_s": round(achieved, 2), "configured_rate_per_s": round(1000 / pace.emission, 2),
            "paced_span_s": round((starts[-1] - starts[0]) / 1000, 2), "ideal_span_s": round(expected_s, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=200, help="runs of each function")
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--period-ms", type=int, default=1000)
    ap.add_argument("--burst", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds allowed beyond the ideal schedule")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    c.console.print(f"[bold]command[/]: PYTHONPATH=. python bench/flow_throttle.py --runs {args.runs} "
                    f"--limit {args.limit} --period-ms {args.period_ms} --burst {args.burst}")
    with c.broker("flow-throttle") as servers:
        r = measure(servers, args)
    e, f = r["pacing_error_ms"], r["free_start_delay_ms"]
    rows = [
        ("pacing error p50 / p99 / max", f"{e['p50']:.0f} / {e['p99']:.0f} / {e['max']:.0f} ms",
         f"{r['runs']} throttled starts; early: {r['early']} (must be 0)"),
        ("same function, no throttle: start delay after receipt p50 / p99 / max",
         f"{f['p50']:.0f} / {f['p99']:.0f} / {f['max']:.0f} ms", f"{r['runs']} starts"),
        ("throttled start rate after the burst", f"{r['paced_rate_per_s']}/s",
         f"configured {r['configured_rate_per_s']}/s; span {r['paced_span_s']} s, ideal {r['ideal_span_s']} s"),
    ]
    c.out.print(c.results_table("flow throttle", rows))
    c.emit("flow_throttle", r)


if __name__ == "__main__":
    main()
