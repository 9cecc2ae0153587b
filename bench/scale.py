"""A million sleeping runs: RSS per service, restart to the first cancel, cancel latency under noise.

Run (from the repository root):

    PYTHONPATH=. python bench/scale.py                 # 1,000,000 runs: 15-30 minutes
    PYTHONPATH=. python bench/scale.py --runs 20000    # ~2 minutes

The function is the seed's import (``bench/scale_app.py``): triggered by ``contacts/import.requested``, a
cancel rule ``async.data.importId == event.data.importId`` on ``contacts/import.cancelled``, then
``step.sleep`` for a week. The five services run as ``pipeline run <service>``, each its own process (so the
RSS is per service), on the bench's broker and topics, each with its own ``PIPELINE_INSTANCE_ID`` (a
restarted process comes back as the same transactional id and static group member, as a supervisor's restart
would). The bench uses the public entry points only: the CLI, the topics and the HTTP API.

1. **Creation.** One untimed import/cancel pair goes through every service first. Then ``--runs`` trigger
   events (distinct importIds) are produced to ``events`` with a plain producer in the runtime's encoding
   and client settings (what ``pipeline send`` does, batched); the bench waits until every run's latest state
   on ``runs`` (read_committed) is Sleeping. It peeks at the status field only (``StatusPeek``), instead of
   decoding every state, so that the instrument does not take a core from the services.
2. **RSS** of each service (VmRSS, and the peak VmHWM, from /proc) once every run sleeps and ``--settle``
   seconds have passed.
3. **Cancel latency.** ``--noise-rate`` events/s of a name nobody listens to go through ``POST /e/{key}``
   (``--noise-batch`` events a request) from here on. After 2 s of it, ``--cancels`` cancel events for
   distinct sleeping runs are produced 20-50 ms apart. Latency = from just before the cancel event's
   ``produce`` (the producer's 5 ms linger included) until its run's ``inngest/function.cancelled`` is
   readable by a read_committed consumer of ``system-events`` (the owner writes it in the transaction that
   writes the run's Cancelled state).
4. **Restart to the first cancel**, for the run owner, then the canceller: SIGKILL the process, produce a
   cancel for a sleeping run right away, start the service again, and time until that run's
   ``function.cancelled`` is readable. Reported from the restart (the process started) and from the kill.
   The restarted service's RSS is read again ``--settle`` seconds later; it logs at INFO, and its log gives
   when it was assigned its partitions and how many records its rebuild read in how long.
5. **Where each cancel waited**, read back afterwards from the tails of ``events``, ``cancel-index`` and
   ``run-commands`` (from their end offsets before step 3): produce (→ the broker's receive time), matcher
   (→ its signal), canceller (→ its command), run owner (→ the cancelled event's ts) and its commit plus the
   read. A diagnostic beside the figures, as ``bench/cancel_path.py`` is for ``bench/steps.py``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from confluent_kafka.admin import AdminClient

from bench import _common as c
from bench.scale_app import CANCEL, IMPORT
from bench.scale_io import HOPS, ROOT, Asleep, Cancelled, Events, Noise, Service, cancel_hops
from bench.steps import free_port, instrument_without_gc, wait_until
from pipeline.config import Settings
from pipeline.kafka import topics as t
from pipeline.kafka.client import admin_config

SERVICES = ("api", "matcher", "run-owner", "canceller", "worker")
TARGET_RSS_MIB, TARGET_RESTART_S, TARGET_P99_MS = 500, 10.0, 100.0


# --------------------------------------------------------------------------- pure helpers


def latency_figures(label: str, ms: list[float]) -> dict[str, Any]:
    """n, p50, p90, p99 and max of latencies in ms (nearest rank), under ``label_``."""
    if not ms:
        return {f"{label}_n": 0}
    return {f"{label}_n": len(ms), **{f"{label}_p{q}_ms": round(c.percentile(ms, q), 1) for q in (50, 90, 99)},
            f"{label}_max_ms": round(max(ms), 1)}


#: What a restarted service logs at INFO on its way to its first record (pipeline/kafka/loop.py, rebalance.py,
#: restore.py). Only a diagnostic split of the restart figure, which does not depend on them.
RESTART_MARKS = ("service started", "partitions assigned", "state rebuilt")


def log_marks(lines: list[str], since: float) -> dict[str, Any]:
    """From a service's JSON log lines: seconds after ``since`` (epoch) of its first "service started" and
    "partitions assigned" and its last "state rebuilt", with the records and seconds of every rebuild summed.
    Lines that are not JSON log records, or older than ``since``, are ignored."""
    marks: dict[str, Any] = {}
    records = seconds = 0.0
    for line in lines:
        try:
            entry = json.loads(line)
            at = datetime.datetime.fromisoformat(entry["ts"].replace("Z", "+00:00")).timestamp() - since
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
        if at < -0.001 or entry.get("msg") not in RESTART_MARKS:
            continue
        name = entry["msg"].replace(" ", "_") + "_s"
        if entry["msg"] == "state rebuilt":
            marks[name] = round(at, 2)
            records += entry.get("records") or 0
            seconds += entry.get("seconds") or 0
        else:
            marks.setdefault(name, round(at, 2))
    if "state_rebuilt_s" in marks:
        marks.update(rebuilt_records=int(records), rebuild_seconds=round(seconds, 2))
    return marks


def hop_figures(per_cancel: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """p50 / p90 / p99 / max in ms of each hop over the cancels (nearest rank)."""
    out: dict[str, dict[str, float]] = {}
    for hop in HOPS:
        values = [h[hop] for h in per_cancel]
        if values:
            out[hop] = {f"p{q}": round(c.percentile(values, q), 1) for q in (50, 90, 99)} | {"max": max(values)}
    return out


def creation_timeout(runs: int) -> float:
    """Seconds allowed for every run to be asleep: 5 minutes plus 200 runs/s (a tenth of what is expected)."""
    return 300.0 + runs / 200


# --------------------------------------------------------------------------- phases


def memory(services: dict[str, Service]) -> dict[str, dict[str, float]]:
    return {name: svc.memory() for name, svc in services.items()}


def create_runs(args: argparse.Namespace, services: dict[str, Service], events: Events, asleep: Asleep,
                ids: list[str]) -> dict[str, Any]:
    """Produce one trigger event per id, then wait until every run sleeps."""
    started = time.perf_counter()
    with c.progress_bar(f"produce {len(ids):,} imports to events", len(ids)) as advance:
        for i, import_id in enumerate(ids):
            events.produce(*events.encode(IMPORT, import_id))
            if i % 5000 == 0:
                advance(i)
        events.flush()
        advance(len(ids))
    produced = time.perf_counter()
    timeout = args.timeout or creation_timeout(len(ids))
    with c.progress_bar(f"{len(ids):,} runs asleep (runs topic)", len(ids)) as advance:
        deadline = time.monotonic() + timeout
        while asleep.sleeping < len(ids):
            advance(asleep.sleeping)
            for svc in services.values():
                svc.check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{asleep.sleeping:,} of {len(ids):,} runs asleep within {timeout:.0f}s")
            time.sleep(0.2)
        advance(len(ids))
    asleep_at = time.perf_counter()
    return {"produce_seconds": round(produced - started, 1), "create_seconds": round(asleep_at - started, 1),
            "runs_asleep_per_s": round(c.rate(len(ids), asleep_at - started)),
            "run_states_read": asleep.states, "load_avg_after_create": round(os.getloadavg()[0], 2)}


def cancel_latency(events: Events, cancelled: Cancelled, ids: list[str],
                   log: dict[str, tuple[str, float]]) -> dict[str, Any]:
    """One cancel event per id, 20-50 ms apart; latency = produce → function.cancelled readable. ``log`` gets
    each cancel event's id -> (import id, wall time of the produce)."""
    sent: dict[str, float] = {}
    wall = time.time() - time.perf_counter()
    with c.progress_bar(f"{len(ids):,} cancels under noise", len(ids)) as advance:
        for i, import_id in enumerate(ids):
            key, value = events.encode(CANCEL, import_id)
            time.sleep(random.uniform(0.02, 0.05))
            sent[import_id] = events.produce(key, value)
            log[key] = (import_id, sent[import_id] + wall)
            advance(i + 1)
        events.flush()
    wait_until(lambda: all(x in cancelled.at for x in ids), 120, f"{len(ids)} cancels applied")
    return latency_figures("cancel", [(cancelled.at[x] - sent[x]) * 1000 for x in ids])


def restart_to_cancel(args: argparse.Namespace, svc: Service, events: Events, cancelled: Cancelled,
                      import_id: str, log: dict[str, tuple[str, float]]) -> dict[str, Any]:
    """SIGKILL ``svc``, produce a cancel, start ``svc`` again; seconds until that cancel is applied."""
    key, value = events.encode(CANCEL, import_id)
    before = svc.memory()
    logged = svc.log.stat().st_size if svc.log.exists() else 0
    with c.console.status(f"{svc.name}: SIGKILL, a cancel, restart, until the cancel is applied..."):
        killed = time.perf_counter()
        svc.kill()
        sent = events.produce(key, value)
        restarted, restarted_wall = time.perf_counter(), time.time()
        log[key] = (import_id, sent + restarted_wall - restarted)
        svc.start(log_level="INFO")  # its way back in its log: started, assigned, state rebuilt
        applied = cancelled.wait(import_id, args.restart_timeout, f"the cancel after restarting {svc.name}")
        svc.check()
    time.sleep(args.settle)
    with svc.log.open("rb") as log:
        log.seek(logged)
        lines = log.read().decode(errors="replace").splitlines()
    return {"restart_to_cancel_s": round(applied - restarted, 2), "kill_to_cancel_s": round(applied - killed, 2),
            "cancel_after_kill_s": round(applied - sent, 2), "after_restart": log_marks(lines, restarted_wall),
            "rss_before_kill": before, "rss_after_restart": svc.memory()}


# --------------------------------------------------------------------------- main


def run(servers: str, args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    settings = Settings(bootstrap_servers=servers, topic_prefix=c.unique_prefix("scale"), partitions=args.partitions)
    t.create_topics(AdminClient(admin_config(servers)), settings)
    port = free_port()
    env = dict(os.environ, PIPELINE_BOOTSTRAP_SERVERS=servers, PIPELINE_TOPIC_PREFIX=settings.topic_prefix,
               PIPELINE_PARTITIONS=str(settings.partitions), PIPELINE_LOG_LEVEL="WARNING", PYTHONPATH=str(ROOT))
    services = {name: Service(name, env, logs, port) for name in SERVICES}
    events = Events(servers, settings.topic(t.EVENTS))
    asleep = Asleep(servers, settings.topic(t.RUNS))
    cancelled = Cancelled(servers, settings.topic(t.SYSTEM_EVENTS))
    noise = Noise(port, args.noise_rate, args.noise_batch)
    figures: dict[str, Any] = {"runs": args.runs, "partitions": args.partitions, "logs": str(logs)}
    try:
        for svc in services.values():
            svc.start()
        with c.console.status("services starting; one import/cancel pair through all of them (untimed)..."):
            events.send(IMPORT, "warm")
            events.flush()
            wait_until(lambda: asleep.sleeping >= 1 or any(s.check() for s in services.values()), 120,
                       "the warm-up run asleep")
            events.send(CANCEL, "warm")
            events.flush()
            cancelled.wait("warm", 60, "the warm-up cancel")
            wait_until(lambda: asleep.sleeping == 0, 30, "the warm-up run's Cancelled state")
        ids = [f"imp-{i:07d}" for i in range(args.runs)]
        figures.update(create_runs(args, services, events, asleep, ids))
        asleep.close()
        states = len(asleep.latest)
        asleep.latest.clear()
        figures["runs_in_topic"] = states
        with c.console.status(f"settling {args.settle:g} s, then RSS..."):
            time.sleep(args.settle)
            for svc in services.values():
                svc.check()
        figures["rss_mib"] = memory(services)
        picked = random.sample(ids, min(args.cancels + 2, len(ids)))
        topics = {name: settings.topic(name) for name in (t.EVENTS, t.CANCEL_INDEX, t.RUN_COMMANDS)}
        starts = {name: c.end_offsets(servers, topic) for name, topic in topics.items()}
        timed: dict[str, tuple[str, float]] = {}
        after_kill: dict[str, dict[str, tuple[str, float]]] = {"run-owner": {}, "canceller": {}}
        noise.start()
        with instrument_without_gc():
            time.sleep(2.0)
            figures.update(cancel_latency(events, cancelled, picked[:args.cancels], timed))
            figures["load_avg_after_cancels"] = round(os.getloadavg()[0], 2)
            figures["restart"] = {}
            for name, import_id in zip(("run-owner", "canceller"), picked[args.cancels:], strict=False):
                figures["restart"][name] = restart_to_cancel(args, services[name], events, cancelled, import_id,
                                                             after_kill[name])
        figures.update(noise.stop())
        with c.console.status("reading back where each cancel waited (topic tails)..."):
            hops = cancel_hops(servers, topics, starts, {**timed, **after_kill["run-owner"],
                                                         **after_kill["canceller"]}, cancelled)
        figures["cancel_hops_ms"] = hop_figures([hops[k] for k in timed if k in hops])
        for name, log in after_kill.items():
            if name in figures["restart"]:
                figures["restart"][name]["hops_ms"] = next((hops[k] for k in log if k in hops), None)
        figures["rss_mib_end"] = memory(services)
        figures["system_events_other"] = cancelled.other
    finally:
        noise.stop()
        cancelled.close()
        asleep.close()
        for svc in services.values():
            svc.stop()
    return figures


def verdicts(f: dict[str, Any]) -> dict[str, bool]:
    worst_rss = max(m.get("rss", 0.0) for m in (*f["rss_mib"].values(), *f["rss_mib_end"].values()))
    restarts = [r["restart_to_cancel_s"] for r in f["restart"].values()]
    return {"rss_le_500_mib": worst_rss <= TARGET_RSS_MIB,
            "restart_to_cancel_le_10_s": bool(restarts) and max(restarts) <= TARGET_RESTART_S,
            "cancel_p99_le_100_ms": f.get("cancel_p99_ms", float("inf")) <= TARGET_P99_MS}


def table_rows(f: dict[str, Any]) -> list[tuple[str, str, str]]:
    rows = [(f"{f['runs']:,} runs asleep", f"{f['create_seconds']} s",
             f"{f['runs_asleep_per_s']:,} runs/s; producing the events took {f['produce_seconds']} s")]
    for name, mem in f["rss_mib"].items():
        rows.append((f"RSS {name}", f"{mem.get('rss', float('nan')):,.0f} MiB",
                     f"peak {mem.get('peak', float('nan')):,.0f} MiB; target ≤ {TARGET_RSS_MIB}"))
    rows.append((f"cancel latency, {f['cancel_n']:,} cancels",
                 f"p50 {f['cancel_p50_ms']} / p99 {f['cancel_p99_ms']} ms",
                 f"p90 {f['cancel_p90_ms']}, max {f['cancel_max_ms']} ms; noise {f.get('noise_events_per_s')} ev/s "
                 f"via the API; p99 target ≤ {TARGET_P99_MS:.0f} ms"))
    hops = f.get("cancel_hops_ms") or {}
    if hops:
        rows.append(("  where they waited, p50 / p99",
                     ", ".join(f"{h['p50']:.0f}/{h['p99']:.0f}" for h in hops.values()), "ms: " + ", ".join(hops)))
    for name, r in f["restart"].items():
        split = r["after_restart"]
        rebuilt = (f"its log: assigned at {split.get('partitions_assigned_s')} s, {split['rebuilt_records']:,} "
                   f"records rebuilt in {split['rebuild_seconds']} s; " if "rebuilt_records" in split else "")
        rows.append((f"{name}: restart → first cancel applied", f"{r['restart_to_cancel_s']} s",
                     f"kill → applied {r['kill_to_cancel_s']} s; {rebuilt}RSS after "
                     f"{r['rss_after_restart'].get('rss')} MiB (peak {r['rss_after_restart'].get('peak')}); "
                     f"target ≤ {TARGET_RESTART_S:.0f} s"))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=1_000_000, help="sleeping runs to create")
    ap.add_argument("--cancels", type=int, default=1000, help="cancels timed under noise")
    ap.add_argument("--noise-rate", type=float, default=200.0, help="events/s of noise through the API; 0 = none")
    ap.add_argument("--noise-batch", type=int, default=10, help="noise events per POST /e request")
    ap.add_argument("--partitions", type=int, default=3, help="partitions of the keyed topics")
    ap.add_argument("--settle", type=float, default=5.0, help="seconds before reading RSS")
    ap.add_argument("--timeout", type=float, default=0.0,
                    help="seconds allowed for creating the runs (default 300 + runs / 200)")
    ap.add_argument("--restart-timeout", type=float, default=300.0, help="seconds allowed per restart")
    args = ap.parse_args()
    c.console.print(f"[bold]command[/]: PYTHONPATH=. python bench/scale.py --runs {args.runs} --cancels "
                    f"{args.cancels} --noise-rate {args.noise_rate:g} --noise-batch {args.noise_batch} "
                    f"--partitions {args.partitions} --settle {args.settle:g}")
    figures: dict[str, Any] = {"load_avg_at_start": round(os.getloadavg()[0], 2)}
    logs = Path(tempfile.mkdtemp(prefix=f"bench-scale-{uuid.uuid4().hex[:6]}-"))
    with c.broker("scale") as servers:
        figures.update(run(servers, args, logs))
    figures["targets_met"] = verdicts(figures)
    c.out.print(c.results_table(f"{args.runs:,} sleeping runs with a cancel rule", table_rows(figures)))
    c.emit("scale", figures)


if __name__ == "__main__":
    main()
