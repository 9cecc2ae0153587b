"""Apps over HTTP: runs of one step served by inngest-py (uvicorn) and inngest-js (Node), against the same
function run by the in-process worker, with cancel latency measured meanwhile. One run, one broker.

    PYTHONPATH=. python bench/http_apps.py              # 2,000 runs per kind
    PYTHONPATH=. python bench/http_apps.py --runs 300

The services run in this process (tests/http's harness: a Stack and the HTTP API on their own topics), the apps
in their own processes, as `make test` installs them. Per kind: ``--runs`` events ``bench/one-step`` are sent
through ``POST /e`` (100 a request); "seconds" is from the first send to the last run Completed (its state on
``runs``). Meanwhile ``--sleepers`` runs of a sleeping function with a cancel rule (inngest-py's) are cancelled
one every 50 ms; latency = send of the cancel to the run's Cancelled state. Per-step overhead: ``--probes``
runs sent one at a time after the burst; the median of a run's life (ended - started) over HTTP minus the
in-process worker's, for the same one-step function (two calls over HTTP: the step, then the return), measured
first, on the idle stack.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pipeline
from bench._common import broker, console, emit, percentile, results_table
from tests.http.harness import NODE_DIR, HttpStack, node_app, python_app

inproc = pipeline.Inngest(app_id="bench-inproc")


@inproc.create_function(fn_id="one-step", trigger=pipeline.TriggerEvent(event="bench/one-step"))
def one_step(ctx: pipeline.Context) -> int:
    return int(ctx.step.run("only", lambda: 1))


FUNCTIONS = {"py": "py-app-one-step", "js": "ts-steps-one-step", "in-process": "bench-inproc-one-step"}


_seen: dict[str, dict[str, dict[str, Any]]] = {}  # function id -> run id -> latest state, read incrementally
_read = [0]


def latest(http: HttpStack, fn: str) -> dict[str, dict[str, Any]]:
    """The latest state of each run of ``fn``; reads only the records that arrived since the last call (the
    services share this process's interpreter lock: rescanning every record each poll slowed them down)."""
    records = http.stack.runs.records  # type: ignore[union-attr]
    end = len(records)
    for r in records[_read[0]:end]:
        if r is not None:
            _seen.setdefault(r["function_id"], {})[r["run_id"]] = r
    _read[0] = end
    return _seen.get(fn, {})


def burst(http: HttpStack, kind: str, runs: int, sleepers: int) -> dict[str, float]:
    fn = FUNCTIONS[kind]
    before = len(latest(http, fn))
    keys = []
    if sleepers:
        keys = [str(uuid.uuid4()) for _ in range(sleepers)]
        for i in range(0, sleepers, 100):
            http.send(*({"name": "py/flaky", "data": {"k": k, "nap_s": 600}} for k in keys[i:i + 100]))
        deadline = time.monotonic() + 120
        while sum(r["status"] == "Sleeping" for r in latest(http, "py-app-flaky").values()) < sleepers:
            assert time.monotonic() < deadline, "sleepers did not all sleep"
            time.sleep(0.1)
    cancels: dict[str, float] = {}

    def cancel_meanwhile() -> None:
        for k in keys:
            cancels[k] = time.monotonic()
            http.send({"name": "py/stop", "data": {"k": k}})
            time.sleep(0.05)

    start = time.monotonic()
    canceller = threading.Thread(target=cancel_meanwhile)
    canceller.start()
    for i in range(0, runs, 100):
        http.send(*({"name": "bench/one-step", "data": {"i": j}} for j in range(i, min(i + 100, runs))))
    seen_cancel: dict[str, float] = {}
    deadline = time.monotonic() + 600
    while True:
        done = sum(r["status"] == "Completed" for r in latest(http, fn).values())
        now = time.monotonic()
        for r in latest(http, "py-app-flaky").values():
            k = json.loads(r["event"])["data"]["k"]
            if r["status"] == "Cancelled" and k in cancels and k not in seen_cancel:
                seen_cancel[k] = now - cancels[k]
        if done - before >= runs and len(seen_cancel) >= len(keys):
            break
        assert now < deadline, f"{kind}: {done - before}/{runs} runs done"
        time.sleep(0.1)
    seconds = max(time.monotonic() - start, 0.0)
    canceller.join()
    lives = [r["ended_at"] - r["started_at"] for r in latest(http, fn).values() if r["status"] == "Completed"]
    out = {"seconds": round(seconds, 2), "runs_per_s": round(runs / seconds, 1),
           "run_life_p50_ms": percentile(lives, 50)}
    if seen_cancel:
        lat = [v * 1000 for v in seen_cancel.values()]
        out.update(cancel_p50_ms=round(percentile(lat, 50), 1), cancel_p99_ms=round(percentile(lat, 99), 1))
    return out


def probe(http: HttpStack, kind: str, probes: int) -> float:
    """Median life of a one-step run sent alone, one after the other: what a step costs without a queue."""
    # (ended_at - started_at: from the first dispatch to the end, the matcher's hop and the API's write excluded)
    fn = FUNCTIONS[kind]
    lives = []
    for _ in range(probes):
        (eid,) = http.send({"name": "bench/one-step", "data": {"probe": True}})
        deadline = time.monotonic() + 60
        while True:
            runs = [r for r in latest(http, fn).values() if r["event_id"] == eid and r["status"] == "Completed"]
            if runs:
                lives.append(runs[0]["ended_at"] - runs[0]["started_at"])
                break
            assert time.monotonic() < deadline, f"{kind}: probe run not done"
            time.sleep(0.002)
    return percentile(lives, 50)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--sleepers", type=int, default=50)
    parser.add_argument("--probes", type=int, default=30)
    args = parser.parse_args()
    figures: dict[str, Any] = {"runs": args.runs, "sleepers": args.sleepers}
    tmp = Path(tempfile.mkdtemp(prefix="http-apps-"))
    with broker("http-apps") as servers, HttpStack(servers, [inproc]) as http, \
            python_app(http.api_port, "py_app", tmp) as py, node_app(http.api_port, "steps", tmp, NODE_DIR) as js:
        http.sync(py, {FUNCTIONS["py"], "py-app-flaky"})
        http.sync(js, {FUNCTIONS["js"]})
        alone = {kind: probe(http, kind, args.probes) for kind in ("in-process", "py", "js")}  # idle system first
        for kind in ("in-process", "py", "js"):
            console.print(f"[bold]{kind}[/]: {args.runs} runs of one step")
            figures[kind] = burst(http, kind, args.runs, 0 if kind == "in-process" else args.sleepers)
            figures[kind]["alone_life_p50_ms"] = alone[kind]
    base = figures["in-process"]["alone_life_p50_ms"]
    for kind in ("py", "js"):
        figures[kind]["step_overhead_ms"] = figures[kind]["alone_life_p50_ms"] - base
    rows = []
    for kind in ("in-process", "py", "js"):
        f = figures[kind]
        rows.append((f"{kind}: seconds for {args.runs} runs", str(f["seconds"]), f"{f['runs_per_s']} runs/s"))
        rows.append((f"{kind}: run life p50 in the burst", f"{f['run_life_p50_ms']} ms", "queueing included"))
        rows.append((f"{kind}: run life p50 alone", f"{f['alone_life_p50_ms']} ms",
                     f"+{f.get('step_overhead_ms', 0)} ms per step vs in-process" if kind != "in-process" else ""))
        if "cancel_p50_ms" in f:
            rows.append((f"{kind}: cancel p50 / p99 meanwhile", f"{f['cancel_p50_ms']} / {f['cancel_p99_ms']} ms",
                         f"{args.sleepers} sleeping runs cancelled during the burst"))
    console.print(results_table("apps over HTTP", rows))
    emit("http_apps", figures)


if __name__ == "__main__":
    main()
