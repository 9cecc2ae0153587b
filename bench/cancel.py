"""Cancellation benchmarks: canceller throughput, end-to-end cancel latency, and index rebuild at 1M listeners.

Run (from the repository root):

    PYTHONPATH=. python bench/cancel.py                    # all three parts, ~45 s
    PYTHONPATH=. python bench/cancel.py --parts 1          # canceller throughput only (100k listeners)
    PYTHONPATH=. python bench/cancel.py --parts 1 --listeners 1000000 --signals 200000   # at 1M, ~2.5 min
    PYTHONPATH=. python bench/cancel.py --parts 2 --runs 300 --noise-rate 200
    PYTHONPATH=. python bench/cancel.py --parts 3 --rebuild-listeners 1000000

Part 1, canceller throughput (one ``ServiceLoop(Canceller)`` in a child process, its stores in a temporary
directory): the cancel-index topic is pre-loaded with ``--listeners`` (100,000; 1,000,000 for the issue-19
figure) CancelListener records (Avro, record key ``join key NUL run id``, partition crc32(join key) as
pipeline/protocol/keys.py does), the canceller group's offsets are committed at their end, then ``--signals``
CancelSignal records follow, ``--hit-ratio`` of them under the join key of a distinct listener. The child
restores its stores from the listeners (a full restore: the clock for ``rebuild_seconds``), then processes the
signals. Measured from the end of the restore: signals/s (the group's committed offset covers every signal),
cancellations/s (every cancel command readable, read_committed, on run-commands), and the child's CPU per
signal (all its threads, from /proc) and RSS (after the restore, at the end, and its peak). The loop runs as
configured (eager consume, transactional producer with ``retry.backoff.ms=10``).

Part 2, end-to-end cancel latency: a Stack (matcher, run owner, canceller in threads of this process,
as ``pipeline dev`` runs them) and a function that sleeps 10 minutes with
``cancel=[Cancel(event="bench/cancel", match="data.key")]``. ``--runs`` runs are started and must
all be Sleeping; then a steady ``--noise-rate`` events/s of a name nobody listens to runs in the
background while one cancel event per run is produced, spaced 20–50 ms apart. Latency = from
just before ``produce`` of the cancel event to the arrival of its ``inngest/function.cancelled``
record at a read_committed consumer of system-events. Readers on cancel-index and run-commands
split it into hops: matcher (event → signal readable), canceller (signal → cancel command
readable), run owner (command → function.cancelled readable). The services run as configured
(``Stack`` builds them exactly as ``pipeline dev`` does). An untimed raw transactional copy of
``--warmup`` records warms the broker first: on a cold broker (part 2 alone) the JVM compiles while
the cancels are timed, and p99 came out about twice as high.

Part 3, rebuild at scale: ``--rebuild-listeners`` CancelListener records (unique join keys) on a
cancel-index topic, the canceller group's offsets committed at the end; a fresh child process
then restores the canceller's tables as its loop does (``restore_tables``: replay up to the committed offset)
and reports seconds, listeners/s and RSS growth (VmRSS from /proc) with the peak (VmHWM).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import _common as c
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

import pipeline
from pipeline.canceller.service import Canceller
from pipeline.config import Settings
from pipeline.kafka import topics as t
from pipeline.kafka.client import admin_config, consumer_config, producer_config
from pipeline.kafka.loop import ServiceLoop
from pipeline.kafka.store import StoreDir, state_dir
from pipeline.kafka.tables import drop_tables, restore_tables
from pipeline.protocol.keys import join_key, listener_record_key, partition_for, signal_record_key
from pipeline.serde import CANCEL_LISTENER, CANCEL_SIGNAL, EVENT, RUN_COMMAND, Serde
from pipeline.testing.stack import Stack

PARTITIONS = 3
CANCEL_EVENT = "bench/cancel"
CANCELLED = "inngest/function.cancelled"


def new_settings(servers: str, kind: str, batch: int) -> Settings:
    settings = Settings(bootstrap_servers=servers, topic_prefix=c.unique_prefix(kind), partitions=PARTITIONS,
                        instance_id=uuid.uuid4().hex[:8], batch_size=batch)
    t.create_topics(AdminClient(admin_config(servers)), settings)
    return settings


def listener_key(i: int) -> str:
    return join_key(CANCEL_EVENT, "data.id", f"id-{i:07d}")


def listener_records(n: int, now: int, serde: Serde):
    """(record key, Avro value, partition) of n listeners with unique join keys, as the matcher writes them."""
    for i in range(n):
        key = listener_key(i)
        run_id = f"run-{i:07d}"
        value = serde.encode(CANCEL_LISTENER, {
            "join_key": key, "run_id": run_id, "function_id": "bench-sleeper", "trigger_event_id": f"trigger-{i}",
            "trigger_received_at": now - 60_000, "expires_at": now + 24 * 3600_000, "residual": None})
        yield listener_record_key(key, run_id), value, partition_for(key, PARTITIONS)


def signal_records(n: int, listeners: int, hit_ratio: float, now: int, serde: Serde, seed: int = 11):
    """(record key, value, partition) of n signals; ``hit_ratio`` of them under a distinct listener's join key."""
    rnd = random.Random(seed)
    hits = int(n * hit_ratio)
    targets = rnd.sample(range(listeners), hits) + [listeners + 10_000_000 + i for i in range(n - hits)]
    rnd.shuffle(targets)
    for i, j in enumerate(targets):
        key = listener_key(j)
        eid = f"sig-{i:07d}"
        event = json.dumps({"data": {"id": f"id-{j:07d}"}, "id": eid, "name": CANCEL_EVENT, "ts": now, "user": {}})
        value = serde.encode(CANCEL_SIGNAL, {"join_key": key, "event_id": eid, "received_at": now, "event": event})
        yield signal_record_key(key, eid), value, partition_for(key, PARTITIONS)


# --------------------------------------------------------------------------- part 1: throughput


def part_throughput(servers: str, args: argparse.Namespace) -> dict[str, Any]:
    serde = Serde()
    settings = new_settings(servers, "cancel-tput", args.batch)
    index = settings.topic(t.CANCEL_INDEX)
    commands = settings.topic(t.RUN_COMMANDS)
    now = int(time.time() * 1000)
    with c.progress_bar("produce listeners", args.listeners) as update:
        c.raw_produce(servers, index, listener_records(args.listeners, now, serde), args.listeners, update)
    listener_ends = c.end_offsets(servers, index)
    hits = int(args.signals * args.hit_ratio)
    with c.progress_bar("produce signals", args.signals) as update:
        c.raw_produce(servers, index, signal_records(args.signals, args.listeners, args.hit_ratio, now + 1000, serde),
                      args.signals, update)
    signal_ends = c.end_offsets(servers, index)
    group = f"{settings.topic_prefix}pipeline-canceller"
    c.commit_group_offsets(servers, group, index, listener_ends)
    reader = c.Reader(servers, commands, expect=hits, start=c.end_offsets(servers, commands))
    watcher = c.CommitWatcher(servers, group, {(index, p): o for p, o in signal_ends.items()})
    with tempfile.TemporaryDirectory(prefix="bench-cancel-state-") as state:
        child = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--throughput-child", servers,
                                  json.dumps({"prefix": settings.topic_prefix, "batch": args.batch, "state": state})],
                                 stdout=subprocess.PIPE, text=True)
        try:
            with c.console.status(f"canceller (a child process) restoring {args.listeners:,} listeners..."):
                assert child.stdout is not None
                line = child.stdout.readline()  # the child's line once its table is restored
            if not line:
                raise RuntimeError(f"the canceller child ended with {child.wait()} before its restore ended")
            marks = json.loads(line)
            rebuilt = marks["rebuild_end"]
            with c.progress_bar("canceller: cancel commands", hits) as update:
                reader.wait(args.timeout, update)
            watcher.wait(args.timeout)
            done = max(watcher.done_at or 0.0, reader.last or 0.0)
            cpu_done, rss, hwm = _proc_cpu_s(child.pid), _proc_mib(child.pid, "VmRSS"), _proc_mib(child.pid, "VmHWM")
        finally:
            child.send_signal(signal.SIGTERM)
            try:
                out, _ = child.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                child.kill()
                out, _ = child.communicate()
            reader.close()
        final = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    result: dict[str, Any] = {
        "listeners": args.listeners, "signals": args.signals, "expected_cancellations": hits,
        "rebuild_seconds": round(marks["rebuild_end"] - marks["rebuild_start"], 3),
        "listeners_rebuilt": marks["listeners"],
        "signals_per_s": round(c.rate(args.signals, watcher.done_at - rebuilt), 1),
        "cancellations": reader.count,
        "cancellations_per_s": round(c.rate(hits, reader.last - rebuilt), 1),
        "cancels_sent": final.get("cancels_sent"),
        # the child's CPU (all its threads: the loop, librdkafka's, RocksDB's) from the end of its restore until
        # every signal was committed and every command read, per signal
        "cpu_us_per_signal": round((cpu_done - marks["cpu_s"]) / args.signals * 1e6, 1),
        "rebuild_cpu_s": round(marks["cpu_s"] - marks["cpu_start_s"], 2),
        "rss_after_rebuild_mib": marks["rss_mib"], "rss_after_signals_mib": rss, "rss_peak_mib": hwm,
        "processing_seconds": round(done - rebuilt, 3),
    }
    result["target_5000_per_s_met"] = result["cancellations_per_s"] >= 5000
    return result


def _proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _proc_mib(pid: int | str, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def throughput_child(servers: str, conf: dict[str, Any]) -> None:
    """Runs the canceller's ServiceLoop in a fresh interpreter, so that its RSS and CPU are the service's alone.
    Prints one JSON line when its table is restored (perf_counter marks: a system-wide monotonic clock on Linux,
    comparable with the parent's) and one at the end; SIGTERM stops it."""
    logging.basicConfig(level=logging.WARNING)
    settings = Settings(bootstrap_servers=servers, topic_prefix=conf["prefix"], partitions=PARTITIONS,
                        instance_id=uuid.uuid4().hex[:8], batch_size=conf["batch"], state_dir=conf["state"])
    canceller = Canceller(settings)
    marks: dict[str, Any] = {}
    orig_tables, orig_assigned = canceller.partition_tables, canceller.assigned

    def partition_tables() -> Any:  # the loop asks for the tables just before it restores them
        if "rebuild_start" not in marks:
            marks.update(rebuild_start=time.perf_counter(), cpu_start_s=time.process_time())
        return orig_tables()

    def assigned(partitions: list[TopicPartition]) -> None:  # called once the tables are restored
        orig_assigned(partitions)
        if "rebuild_end" in marks:
            return
        marks.update(rebuild_end=time.perf_counter(), cpu_s=time.process_time(), rss_mib=_proc_mib("self", "VmRSS"),
                     listeners=sum(i.listener_count for i in canceller.indexes.values()))
        print(json.dumps(marks), flush=True)

    canceller.partition_tables = partition_tables  # type: ignore[method-assign]
    canceller.assigned = assigned  # type: ignore[method-assign]
    loop = ServiceLoop(canceller, settings, group_id=f"{conf['prefix']}pipeline-canceller")
    signal.signal(signal.SIGTERM, lambda *_: loop.stop())
    loop.run()
    print(json.dumps({"cancels_sent": canceller.cancels_sent}), flush=True)


# --------------------------------------------------------------------------- part 2: latency


def latency_app() -> pipeline.Inngest:
    app = pipeline.Inngest(app_id="benchlat")

    @app.create_function(fn_id="sleeper", trigger=pipeline.TriggerEvent(event="bench/long"),
                         cancel=[pipeline.Cancel(event=CANCEL_EVENT, match="data.key")])
    def sleeper(ctx: pipeline.Context) -> str:
        ctx.step.run("start", lambda: "started")
        ctx.step.sleep("wait", datetime.timedelta(minutes=10))
        return "done"

    return app


def event_value(serde: Serde, name: str, data: dict[str, Any]) -> tuple[str, bytes]:
    eid = uuid.uuid4().hex
    return eid, serde.encode(EVENT, {"id": eid, "name": name, "data": json.dumps(data, separators=(",", ":")),
                                     "user": "{}", "ts": int(time.time() * 1000), "v": None})


def part_latency(servers: str, args: argparse.Namespace) -> dict[str, Any]:
    serde = Serde()
    app = latency_app()
    if args.warmup:
        c.warm_broker(servers, args.warmup, args.batch, args.timeout)
    with Stack(app, servers, batch_size=args.batch) as stack:  # matcher, run owner, canceller as configured
        events = stack.settings.topic(t.EVENTS)
        producer = Producer(producer_config(servers))
        keys = [f"k{i:05d}" for i in range(args.runs)]
        for k in keys:
            eid, value = event_value(serde, "bench/long", {"key": k})
            producer.produce(events, key=eid, value=value)
        producer.flush(30)
        with c.progress_bar("runs sleeping", args.runs) as update:
            deadline = time.monotonic() + args.timeout
            while True:
                runs = stack.latest_runs()
                sleeping = sum(1 for r in runs.values() if r["status"] == "Sleeping")
                update(sleeping)
                if sleeping >= args.runs:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"only {sleeping} of {args.runs} runs sleeping")
                time.sleep(0.2)
        key_of_run = {rid: json.loads(r["event"])["data"]["key"] for rid, r in runs.items()}

        sent: dict[str, float] = {}
        at_signal: dict[str, float] = {}
        at_command: dict[str, float] = {}
        at_cancelled: dict[str, float] = {}

        def on_signal(msgs: list[Any], now: float) -> None:
            for m in msgs:
                if m.value() is None:
                    continue
                name, rec = serde.decode(m.value())
                if name == CANCEL_SIGNAL:
                    at_signal.setdefault(json.loads(rec["event"])["data"].get("key"), now)

        def on_command(msgs: list[Any], now: float) -> None:
            for m in msgs:
                rec = serde.decode_as(RUN_COMMAND, m.value())
                if rec["kind"] == "cancel" and rec["run_id"] in key_of_run:
                    at_command.setdefault(key_of_run[rec["run_id"]], now)

        def on_system(msgs: list[Any], now: float) -> None:
            for m in msgs:
                rec = serde.decode_as(EVENT, m.value())
                if rec["name"] == CANCELLED:
                    at_cancelled.setdefault(json.loads(rec["data"])["event"]["data"]["key"], now)

        s = stack.settings
        readers = [c.Reader(servers, s.topic(topic), on_batch=cb, start=c.end_offsets(servers, s.topic(topic)))
                   for topic, cb in ((t.CANCEL_INDEX, on_signal), (t.RUN_COMMANDS, on_command),
                                     (t.SYSTEM_EVENTS, on_system))]

        stop_noise = threading.Event()
        noise_sent = [0]

        def noise() -> None:
            p = Producer(producer_config(servers))
            interval = 1.0 / args.noise_rate
            nxt = time.perf_counter()
            while not stop_noise.is_set():
                eid, value = event_value(serde, "bench/noise", {"n": noise_sent[0]})
                p.produce(events, key=eid, value=value)
                p.poll(0)
                noise_sent[0] += 1
                nxt += interval
                delay = nxt - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            p.flush(10)

        noise_thread = threading.Thread(target=noise, daemon=True)
        noise_thread.start()
        time.sleep(1.0)  # the background load is steady before the first cancel
        rnd = random.Random(5)
        order = keys[: args.cancels]
        rnd.shuffle(order)
        noise_started = time.perf_counter()
        try:
            with c.progress_bar("cancels observed", len(order)) as update:
                for k in order:
                    eid, value = event_value(serde, CANCEL_EVENT, {"key": k})
                    sent[k] = time.perf_counter()
                    producer.produce(events, key=eid, value=value)
                    producer.poll(0)
                    update(len(at_cancelled))
                    time.sleep(rnd.uniform(args.gap_min_ms, args.gap_max_ms) / 1000)
                deadline = time.monotonic() + 30
                while len(at_cancelled) < len(order) and time.monotonic() < deadline:
                    update(len(at_cancelled))
                    time.sleep(0.05)
                update(len(at_cancelled))
        finally:
            stop_noise.set()
            noise_thread.join(10)
            noise_rate = noise_sent[0] / (time.perf_counter() - noise_started + 1.0)
            for r in readers:
                r.close()
            producer.flush(10)

    def ms(values: list[float]) -> dict[str, float]:
        if not values:
            return {}
        return {"p50": round(c.percentile(values, 50) * 1000, 1), "p99": round(c.percentile(values, 99) * 1000, 1),
                "max": round(max(values) * 1000, 1)}

    done = [k for k in order if k in at_cancelled]
    total = [at_cancelled[k] - sent[k] for k in done]
    hops = {
        "matcher": [at_signal[k] - sent[k] for k in done if k in at_signal],
        "canceller": [at_command[k] - at_signal[k] for k in done if k in at_signal and k in at_command],
        "run-owner": [at_cancelled[k] - at_command[k] for k in done if k in at_command],
    }
    row: dict[str, Any] = {"runs": args.runs, "cancels": len(order), "observed": len(done), "warmup": args.warmup,
                           "noise_events_per_s": round(noise_rate, 1), "latency_ms": ms(total),
                           "hops_ms": {h: ms(v) for h, v in hops.items()}}
    row["target_p99_lt_250ms_met"] = bool(total) and row["latency_ms"]["p99"] < 250 and len(done) == len(order)
    return row


# --------------------------------------------------------------------------- part 3: rebuild at 1M


def part_rebuild(servers: str, args: argparse.Namespace) -> dict[str, Any]:
    serde = Serde()
    settings = new_settings(servers, "cancel-rebuild", args.batch)
    index = settings.topic(t.CANCEL_INDEX)
    n = args.rebuild_listeners
    now = int(time.time() * 1000)
    with c.progress_bar("produce listeners (rebuild)", n) as update:
        produce_s = c.raw_produce(servers, index, listener_records(n, now, serde), n, update)
    ends = c.end_offsets(servers, index)
    c.commit_group_offsets(servers, f"{settings.topic_prefix}pipeline-canceller", index, ends)
    with c.console.status(f"rebuilding {n:,} listeners in a fresh process (Canceller.assigned)..."), \
            tempfile.TemporaryDirectory(prefix="bench-cancel-state-") as state:
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--rebuild-child", servers,
                               settings.topic_prefix], stdout=subprocess.PIPE, text=True, timeout=args.timeout * 2,
                              env={**os.environ, "PIPELINE_STATE_DIR": state})
    if proc.returncode != 0:
        raise RuntimeError(f"rebuild child failed with {proc.returncode}")
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    child["produce_seconds"] = round(produce_s, 3)
    return child


def rebuild_child(servers: str, prefix: str) -> None:
    """Runs in a fresh interpreter so RSS growth is the index alone (not the producer's leftovers)."""
    logging.basicConfig(level=logging.WARNING)
    settings = Settings(bootstrap_servers=servers, topic_prefix=prefix, partitions=PARTITIONS,
                        instance_id="rebuild")
    canceller = Canceller(settings)
    index = settings.topic(t.CANCEL_INDEX)
    consumer = Consumer(consumer_config(servers, f"{prefix}pipeline-canceller"))
    parts = [TopicPartition(index, p) for p in range(PARTITIONS)]
    consumer.committed(parts, timeout=30)  # warm up the coordinator lookup outside the clock
    gc.collect()
    rss0 = c.rss_mib()
    started = time.perf_counter()
    stores = StoreDir(state_dir(settings.state_dir), f"{prefix}pipeline-canceller", f"rebuild-{os.getpid()}")
    restore_tables(canceller.partition_tables(), parts, servers=servers, consumer=consumer, service=canceller.name,
                   dead_letter=None, stores=stores)
    canceller.assigned(parts)
    seconds = time.perf_counter() - started
    count = sum(i.listener_count for i in canceller.indexes.values())
    # a restart: the stores are on disk, the changelog's tail (nothing here) is all a restore reads
    drop_tables(canceller.partition_tables(), parts)
    warm = time.perf_counter()
    restore_tables(canceller.partition_tables(), parts, servers=servers, consumer=consumer, service=canceller.name,
                   dead_letter=None, stores=stores)
    warm_seconds = time.perf_counter() - warm
    rss1 = c.rss_mib()
    gc.collect()
    rss2 = c.rss_mib()
    hwm = None
    for line in Path("/proc/self/status").read_text().splitlines() if Path("/proc/self/status").exists() else []:
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) / 1024
    consumer.close()
    print(json.dumps({"listeners": count, "seconds": round(seconds, 3), "restart_seconds": round(warm_seconds, 3),
                      "listeners_per_s": round(c.rate(count, seconds), 1),
                      "rss_before_mib": round(rss0, 1), "rss_after_mib": round(rss1, 1),
                      "rss_after_gc_mib": round(rss2, 1), "rss_growth_mib": round(rss2 - rss0, 1),
                      "rss_peak_mib": round(hwm, 1) if hwm else None,
                      "bytes_per_listener": round((rss2 - rss0) * 1024 * 1024 / max(count, 1), 1)}))


# --------------------------------------------------------------------------- main


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--throughput-child":
        throughput_child(sys.argv[2], json.loads(sys.argv[3]))
        return
    if len(sys.argv) == 4 and sys.argv[1] == "--rebuild-child":
        rebuild_child(sys.argv[2], sys.argv[3])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="1,2,3", help="which parts to run, e.g. 1,3")
    ap.add_argument("--batch", type=int, default=Settings.model_fields["batch_size"].default)
    ap.add_argument("--listeners", type=int, default=100_000, help="part 1: active listeners")
    ap.add_argument("--signals", type=int, default=50_000, help="part 1: cancel signals")
    ap.add_argument("--hit-ratio", type=float, default=0.9, help="part 1: share of signals that hit a listener")
    ap.add_argument("--runs", type=int, default=300, help="part 2: sleeping runs")
    ap.add_argument("--cancels", type=int, default=None, help="part 2: cancel events (default: one per run)")
    ap.add_argument("--noise-rate", type=float, default=200.0, help="part 2: background events/s")
    ap.add_argument("--warmup", type=int, default=50_000,
                    help="part 2: records of an untimed raw transactional copy first (broker JIT); 0 = none")
    ap.add_argument("--gap-min-ms", type=float, default=20.0)
    ap.add_argument("--gap-max-ms", type=float, default=50.0)
    ap.add_argument("--rebuild-listeners", type=int, default=1_000_000, help="part 3: listeners to rebuild")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds allowed per wait")
    args = ap.parse_args()
    args.cancels = args.runs if args.cancels is None else min(args.cancels, args.runs)
    logging.basicConfig(level=logging.WARNING)
    parts = {p.strip() for p in args.parts.split(",")}
    c.console.print(f"[bold]command[/]: PYTHONPATH=. python bench/cancel.py --parts {args.parts} "
                    f"--listeners {args.listeners} --signals {args.signals} --hit-ratio {args.hit_ratio} "
                    f"--runs {args.runs} --noise-rate {args.noise_rate:g} --warmup {args.warmup} "
                    f"--rebuild-listeners {args.rebuild_listeners}")
    figures: dict[str, Any] = {"batch": args.batch}
    with c.broker("cancel") as servers:
        if "1" in parts:
            figures["throughput"] = part_throughput(servers, args)
        if "2" in parts:
            figures["latency"] = part_latency(servers, args)
        if "3" in parts:
            figures["rebuild"] = part_rebuild(servers, args)

    rows: list[tuple[str, str, str]] = []
    if "throughput" in figures:
        tp = figures["throughput"]
        rows += [
            (f"canceller rebuild, {tp['listeners']:,} listeners", f"{tp['rebuild_seconds']:.2f} s",
             f"{tp['listeners_rebuilt']:,} rebuilt"),
            ("canceller signals", c.fmt_rate(tp["signals_per_s"]), f"{tp['signals']:,} signals"),
            ("canceller cancellations", c.fmt_rate(tp["cancellations_per_s"]),
             f"{tp['cancellations']:,} readable; target ≥ 5,000/s"),
            ("canceller CPU per signal", f"{tp['cpu_us_per_signal']:.1f} µs", "all its threads"),
            ("canceller RSS after restore / end / peak",
             f"{tp['rss_after_rebuild_mib']:.0f} / {tp['rss_after_signals_mib']:.0f} / {tp['rss_peak_mib']:.0f} MiB",
             "a child process"),
        ]
    if "latency" in figures:
        r = figures["latency"]
        lat, hops = r["latency_ms"], r["hops_ms"]
        rows.append(("cancel latency p50 / p99 / max", f"{lat.get('p50')} / {lat.get('p99')} / {lat.get('max')} ms",
                     f"{r['observed']}/{r['cancels']} cancelled, noise {r['noise_events_per_s']:.0f}/s; "
                     f"target p99 < 250 ms"))
        for hop in ("matcher", "canceller", "run-owner"):
            h = hops.get(hop) or {}
            rows.append((f"  hop {hop} p50 / p99", f"{h.get('p50')} / {h.get('p99')} ms", ""))
    if "rebuild" in figures:
        r = figures["rebuild"]
        rows += [
            (f"rebuild {r['listeners']:,} listeners", f"{r['seconds']:.1f} s", c.fmt_rate(r["listeners_per_s"])),
            ("restart with the stores on disk", f"{r.get('restart_seconds', 0):.2f} s", "tail only"),
            ("rebuild RSS growth", f"{r['rss_growth_mib']:,.0f} MiB",
             f"{r['bytes_per_listener']:.0f} B/listener; peak RSS {r['rss_peak_mib']} MiB"),
        ]
    c.out.print(c.results_table("cancel", rows))
    c.emit("cancel", figures)


if __name__ == "__main__":
    main()
