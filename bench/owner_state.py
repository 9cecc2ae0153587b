"""The run owner holding many sleeping runs: memory, and restart to the first processed command.

Run (from the repository root):

    PYTHONPATH=. python bench/owner_state.py                  # 1,000,000 runs (~3 min to produce them)
    PYTHONPATH=. python bench/owner_state.py --runs 100000

``--runs`` sleeping run states (each asleep for a week, written straight to the ``runs`` changelog, Avro, as the
owner writes them; partition = run-commands partition) are the owner's state. Then:

1. first start: a fresh ``ServiceLoop(RunOwner)`` in a child process restores its partitions (an empty state
   store: the whole changelog) until it is ready; its RSS then; a SIGTERM stops it cleanly;
2. restart: one cancel command for a run of partition 0 is produced, and a new child (same instance id, so the
   same state stores) starts; seconds from its spawn until it has processed that command, and its RSS then.

Every child is a fresh interpreter, so RSS is the service alone. ``PIPELINE_STATE_DIR`` decides where the stores
go (a temp dir of the run by default, as for every bench: ``_common``). Run with ``PYTHONPATH`` at an older
checkout to measure its code the same way.
"""

from __future__ import annotations

import argparse
import datetime
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import _common as c
from confluent_kafka.admin import AdminClient

import pipeline
from pipeline.config import Settings
from pipeline.kafka import topics as t
from pipeline.kafka.client import admin_config
from pipeline.protocol.commands import cancel_command
from pipeline.run_owner import state as st
from pipeline.sdk.app import Registry
from pipeline.serde import RUN_COMMAND, RUN_STATE, Serde

PARTITIONS = 3
WEEK_MS = 7 * 24 * 3600 * 1000

app = pipeline.Inngest(app_id="bench-state")


@app.create_function(fn_id="sleeper", trigger=pipeline.TriggerEvent(event="bench/sleep"))
def sleeper(ctx: pipeline.ContextSync) -> str:
    ctx.step.run("first", lambda: "done")
    ctx.step.sleep("nap", datetime.timedelta(days=7))
    return "woke"


def _sleeping_state(run_id: str, now: int) -> dict[str, Any]:
    """A run asleep for a week after one step, made by the owner's own state machine."""
    fn = sleeper  # type: ignore[attr-defined]
    event = {"id": f"e-{run_id}", "name": "bench/sleep", "data": {"importId": run_id, "n": 1}, "user": {},
             "ts": now}
    cmd = {"kind": "start", "run_id": run_id, "function_id": fn.id, "ts": now, "event": json.dumps(event),
           "received_at": now, "reason": None, "source_id": None, "attempt": 0, "step_id": None}
    state = st.start(cmd, event["id"], now, start_timeout_ms=None, slot_keys=[]).state
    assert state is not None
    state = st.dispatch(state, now, finish_timeout_ms=None)
    outcome = {"run_id": run_id, "function_id": fn.id, "seq": state["seq"], "attempt": state["attempt"],
               "kind": "sleep", "step_id": "nap", "output": None, "wake_at": now + WEEK_MS, "events": None,
               "error": None, "retriable": True, "started_at": now, "finished_at": now, "worker": "w", "wait": None,
               "final": None, "sleep_step": None, "sleep_ms": None}
    slept = st.apply_outcome(state, outcome, now, retries=0, backoff_ms=1000).state
    assert slept is not None and slept["status"] == "Sleeping", slept
    return slept


def _run_id(i: int) -> str:
    return f"run-{i % PARTITIONS}-{i:07d}"


def produce_runs(servers: str, settings: Settings, runs: int) -> float:
    serde = Serde()
    now = int(time.time() * 1000)
    template = _sleeping_state(_run_id(0), now)

    def records() -> Any:
        for i in range(runs):
            run_id = _run_id(i)
            state = dict(template, run_id=run_id, event_id=f"e-{run_id}")
            yield run_id.encode(), serde.encode(RUN_STATE, state), i % PARTITIONS

    with c.progress_bar("produce sleeping runs", runs) as update:
        return c.raw_produce(servers, settings.topic(t.RUNS), records(), runs, update)


def child(servers: str, prefix: str, expect: int) -> None:
    """A run owner in this fresh process: report when it is ready and when it has processed ``expect`` records."""
    import logging

    from pipeline.kafka.loop import ServiceLoop, run_in_thread
    from pipeline.run_owner.owner import RunOwner

    logging.basicConfig(level=logging.WARNING)
    settings = Settings(bootstrap_servers=servers, topic_prefix=prefix, partitions=PARTITIONS,
                        instance_id="bench-owner")
    loop = ServiceLoop(RunOwner(Registry([app]), settings), settings)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    thread = run_in_thread(loop)
    while not loop.ready:
        time.sleep(0.005)
    ready = time.time()
    print(json.dumps({"ready_at": ready, "rss_mib": round(c.rss_mib(), 1)}), flush=True)
    while loop.processed < expect and not stop.is_set():
        time.sleep(0.002)
    if expect:
        print(json.dumps({"processed_at": time.time(), "rss_mib": round(c.rss_mib(), 1)}), flush=True)
    stop.wait(600)
    loop.stop()
    thread.join(60)


def spawn(servers: str, prefix: str, expect: int, timeout: float) -> tuple[float, list[dict[str, Any]], Any]:
    started = time.time()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--child", servers, prefix, str(expect)],
                            stdout=subprocess.PIPE, text=True)
    lines: list[dict[str, Any]] = []
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while len(lines) < (2 if expect else 1):
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"child exited with {proc.wait()}")
        if line.startswith("{"):
            lines.append(json.loads(line))
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("child timed out")
    return started, lines, proc


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=1_000_000)
    ap.add_argument("--timeout", type=float, default=900.0)
    args = ap.parse_args()
    figures: dict[str, Any] = {"runs": args.runs}
    with c.broker("owner-state") as servers:
        prefix = c.unique_prefix("owner-state")
        settings = Settings(bootstrap_servers=servers, topic_prefix=prefix, partitions=PARTITIONS)
        t.create_topics(AdminClient(admin_config(servers)), settings)
        figures["produce_seconds"] = round(produce_runs(servers, settings, args.runs), 1)

        started, lines, proc = spawn(servers, prefix, 0, args.timeout)
        figures["first_start"] = {"ready_seconds": round(lines[0]["ready_at"] - started, 2),
                                  "rss_mib": lines[0]["rss_mib"]}
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)

        run_id = _run_id(0)
        command = cancel_command(run_id, sleeper.id, "api", None, int(time.time() * 1000))  # type: ignore[attr-defined]
        c.raw_produce(servers, settings.topic(t.RUN_COMMANDS),
                      iter([(run_id.encode(), Serde().encode(RUN_COMMAND, command), 0)]), 1)
        started, lines, proc = spawn(servers, prefix, 1, args.timeout)
        figures["restart"] = {"ready_seconds": round(lines[0]["ready_at"] - started, 2),
                              "first_command_seconds": round(lines[1]["processed_at"] - started, 2),
                              "rss_mib": lines[1]["rss_mib"]}
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)
    first, restart = figures["first_start"], figures["restart"]
    rows = [
        (f"first start, {args.runs:,} runs: ready", f"{first['ready_seconds']:.1f} s", "restore from the changelog"),
        ("first start: RSS", f"{first['rss_mib']:,.0f} MiB", ""),
        ("restart: ready", f"{restart['ready_seconds']:.2f} s", "from the spawn"),
        ("restart: first command processed", f"{restart['first_command_seconds']:.2f} s",
         "from the spawn; target ≤ 10 s"),
        ("restart: RSS", f"{restart['rss_mib']:,.0f} MiB", "target ≤ 500 MiB"),
    ]
    c.out.print(c.results_table("run owner state", rows))
    c.emit("owner_state", figures)


if __name__ == "__main__":
    main()
