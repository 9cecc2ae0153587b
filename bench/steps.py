"""Steps side by side: throughput of I/O-bound steps, cancel latency under that load, the worker hop, the gate.

Run (from the repository root):

    PYTHONPATH=. python bench/steps.py                 # ~2 minutes
    PYTHONPATH=. python bench/steps.py --runs 500 --variants sync:1

The services run as a real ``pipeline dev`` runs them on the bench's broker (the API in dev's process; the
matcher, run owner, canceller and one worker as its child processes); "2 workers" adds one ``pipeline run
worker``. The bench's own readers (system events, run states) live in this process, apart from those.

1. Throughput: ``--runs`` runs of a function whose one step waits 200 ms (``time.sleep`` for the sync
   variant, ``asyncio.sleep`` for the async one) are produced at once; measured from the first produce
   to the last ``inngest/function.finished`` readable (read_committed). The serial figure is
   ``runs x 200 ms``: one handler at a time, as the run owner ran them before workers existed.
2. Cancel latency under that load: ``--sleepers`` unrelated runs sleep with a ``cancel_on`` rule; while
   the I/O steps run, one cancel event each is produced 20-50 ms apart; latency = from just before the
   produce to the arrival of its ``inngest/function.cancelled``. Reported whole and split: cancels sent
   during the ingest (before the owner had started the burst's last run: they queue behind the burst's
   events in the matcher and its starts in the owner, both FIFO per partition) and while the steps run.
   Where the time goes, per hop (matcher, canceller, run owner, the owner's commit + the reader), is read
   back from the topics afterwards (``bench/cancel_path.py``). While it times, the bench's own garbage
   collector is paused (``instrument_without_gc``): its collections landed on the arrivals it timestamps.
3. The worker hop: ``--probes`` runs of a function whose one step does nothing, one at a time. From the
   run states: hop = step applied by the owner (``completed_at``) - invocation written (``inflight_at``),
   i.e. owner -> Kafka -> worker -> Kafka -> owner. The raw baseline is a confluent-kafka round trip
   measured in the same run: produce -> consume, then produce back -> consume (non-transactional,
   linger 0), which is the floor for two hops.
4. The gate: the same no-op function with a ``cancel_on`` rule. Every point after the first invocation
   (the next invocation, the end) waits until the cancel path is proven past it; the run state counts
   the wait (``gate_wait_ms``). Per point = gate_wait_ms / 2. Functions without cancel rules pay nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import random
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import broker, console, create_topic, emit, percentile, progress_bar, results_table
from bench.cancel_path import HOPS, cancel_hops
from bench.steps_app import IO_SECONDS, app
from pipeline.kafka.client import FETCH_WAIT_MAX_MS, consume_available
from pipeline.protocol.ids import consumer_group
from pipeline.serde import EVENT, Serde
from pipeline.serde.models import event_record_to_dict
from pipeline.testing.stack import Stack

ROOT = Path(__file__).resolve().parents[1]


class Arrivals:
    """Reads system-events (read_committed) and notes when each event first became readable."""

    def __init__(self, servers: str, topic: str) -> None:
        self.serde = Serde()
        self.seen: dict[str, tuple[float, dict[str, Any]]] = {}
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self.consumer = Consumer({"bootstrap.servers": servers, "group.id": "bench-arrivals",
                                  "isolation.level": "read_committed", "fetch.wait.max.ms": FETCH_WAIT_MAX_MS,
                                  "enable.auto.commit": False})
        meta = self.consumer.list_topics(topic, timeout=10).topics[topic]
        self.consumer.assign([TopicPartition(topic, p, -2) for p in meta.partitions])
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            # consume(1000, 0.05) waited for 1,000 records or 50 ms: +25 ms on average to every arrival
            msgs = consume_available(self.consumer, 1000, 0.05)
            now = time.time()
            for msg in msgs:
                if msg.error():
                    continue
                ev = event_record_to_dict(self.serde.decode_as(EVENT, msg.value()))
                with self.lock:
                    self.seen.setdefault(f"{ev['name']}|{ev['data'].get('run_id')}", (now, ev))
        self.consumer.close()

    def count(self, name: str, function_id: str) -> int:
        with self.lock:
            return sum(1 for _, ev in self.seen.values()
                       if ev["name"] == name and ev["data"].get("function_id") == function_id)

    def last(self, name: str, function_id: str) -> float:
        with self.lock:
            return max(t for t, ev in self.seen.values()
                       if ev["name"] == name and ev["data"].get("function_id") == function_id)

    def named(self, name: str, function_id: str) -> list[tuple[float, dict[str, Any]]]:
        with self.lock:
            return [(t, ev) for t, ev in self.seen.values() if ev["name"] == name
                    and ev["data"].get("function_id") == function_id]

    def at(self, name: str, run_id: str) -> float | None:
        with self.lock:
            hit = self.seen.get(f"{name}|{run_id}")
            return hit[0] if hit else None

    def close(self) -> None:
        self._stop.set()
        self.thread.join(5)


@contextlib.contextmanager
def instrument_without_gc() -> Any:
    """While the bench times arrivals, its own garbage collector waits. The bench process is the instrument: its
    readers keep every run state and system event they saw, and a collection of those (gen1 up to 47 ms,
    measured with gc.callbacks) landed on the arrivals it was timestamping. The services collect as usual."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def services(stack: Stack, n_workers: int) -> list[subprocess.Popen]:
    """``pipeline dev`` on the stack's broker and topics (its own worker included), and n_workers - 1 more
    ``pipeline run worker`` processes; returns once dev's API answers (the first runs wait for the rest)."""
    env = stack.env(PYTHONPATH=str(ROOT), PIPELINE_LOG_LEVEL="WARNING")
    api = free_port()
    quiet = {"cwd": ROOT, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    procs = [subprocess.Popen([sys.executable, "-m", "pipeline.cli", "dev", "--app", "bench.steps_app:app",
                               "--port", str(api)], env=env, **quiet)]
    procs += [subprocess.Popen([sys.executable, "-m", "pipeline.cli", "run", "worker", "--app", "bench.steps_app:app"],
                               env=env, **quiet) for _ in range(n_workers - 1)]

    def ready() -> bool:
        if procs[0].poll() is not None:
            raise RuntimeError(f"pipeline dev exited with {procs[0].returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{api}/healthz", timeout=1) as answer:
                return answer.status == 200
        except OSError:
            return False

    wait_until(ready, 60, "pipeline dev ready")
    # Every worker in the group with partitions of its own: a worker that joined during the burst would make a
    # rebalance part of what is timed (how soon dev's own worker joins, next to the API, is not what we measure)
    admin = AdminClient({"bootstrap.servers": stack.settings.bootstrap_servers})
    group = consumer_group(stack.settings.topic_prefix, "worker")

    def workers_assigned() -> bool:
        try:
            members = admin.describe_consumer_groups([group])[group].result(5).members
        except Exception:  # the group may not exist yet
            return False
        return len(members) == n_workers and all(m.assignment.topic_partitions for m in members)

    wait_until(workers_assigned, 60, f"{n_workers} worker(s) in the group with partitions")
    return procs


def stop_services(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(40)
        except subprocess.TimeoutExpired:
            p.kill()


def wait_until(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


def throughput(servers: str, variant: str, n_workers: int, args: argparse.Namespace) -> dict[str, Any]:
    fn = f"bench-io-{variant}"
    with Stack(app, servers, services=()) as stack:
        procs = services(stack, n_workers)
        arrivals = Arrivals(servers, stack.settings.topic("system-events"))
        try:
            for i in range(args.sleepers):
                stack.send("bench/sleep", {"key": f"s{i}"}, id=f"sleep-{i}")
            stack.wait_run(lambda r: sum(1 for s in stack.latest_runs().values() if s["status"] == "Sleeping")
                           >= args.sleepers, timeout=60, what="sleepers asleep")
            # one warm-up run through the workers, so process start-up is not timed
            stack.send(f"bench/io-{variant}", {}, id="warm")
            wait_until(lambda: arrivals.count("inngest/function.finished", fn) >= 1, 60, "warm-up run")
            with instrument_without_gc():
                started = time.time()
                for i in range(args.runs):  # a burst, as a producer sends it: batched, not a round trip each
                    stack.send(f"bench/io-{variant}", {}, id=f"io-{i}", flush=False)
                stack.flush()
                sent_all = time.time()
                sent_cancels: dict[str, float] = {}
                for i in range(args.sleepers):  # cancels for unrelated runs while the steps run
                    time.sleep(random.uniform(0.02, 0.05))
                    sent_cancels[f"sleep-{i}"] = time.time()
                    stack.send("bench/sleep.cancel", {"key": f"s{i}"}, id=f"cancel-{i}")
                with progress_bar(f"{args.runs} x {int(IO_SECONDS * 1000)} ms {variant}, {n_workers} worker(s)",
                                  args.runs + 1) as advance:
                    deadline = time.monotonic() + args.timeout
                    while (done := arrivals.count("inngest/function.finished", fn)) < args.runs + 1:
                        advance(done)
                        if time.monotonic() > deadline:
                            raise TimeoutError(f"{done} of {args.runs} runs finished")
                        time.sleep(0.02)
                    advance(done)
                seconds = arrivals.last("inngest/function.finished", fn) - started
                wait_until(lambda: arrivals.count("inngest/function.cancelled", "bench-sleeper") >= args.sleepers,
                           args.timeout, "every cancel")
            latencies = []  # (sent, ms): from the cancelled events themselves (they carry the sleeper's event)
            for at, ev in arrivals.named("inngest/function.cancelled", "bench-sleeper"):
                sent = sent_cancels[ev["data"]["event"]["id"]]
                latencies.append((sent, (at - sent) * 1000))
            # the ingest: until the owner had started the last run of the burst (the cancels sent before then
            # queue behind the burst's starts in the matcher and the owner)
            stack.wait_run(lambda r: sum(1 for s in stack.latest_runs().values()
                                         if s["function_id"] == fn and s["started_at"]) >= args.runs + 1,
                           timeout=60, what="every run started, in the bench's reader")
            ingest_end = max(s["started_at"] for s in stack.latest_runs().values() if s["function_id"] == fn) / 1000
            cancelled = arrivals.named("inngest/function.cancelled", "bench-sleeper")
            # the run states commit with those events, but the bench's own reader of them may lag behind
            def all_ended() -> bool:
                runs = stack.latest_runs()
                return all(runs.get(ev["data"]["run_id"], {}).get("ended_at") for _, ev in cancelled)

            wait_until(all_ended, 60, "every cancel in the bench's reader")
            path = cancel_hops(servers, stack.settings.topic, stack.latest_runs(), cancelled, ingest_end)
        finally:
            arrivals.close()
            stop_services(procs)
    serial = args.runs * IO_SECONDS
    return {"variant": variant, "workers": n_workers, "runs": args.runs, "seconds": round(seconds, 2),
            "produce_seconds": round(sent_all - started, 3),
            "serial_seconds": serial, "speedup_vs_serial": round(serial / seconds, 1),
            "cancels": len(latencies), **_cancel_figures("cancel", [ms for _, ms in latencies]),
            "ingest_seconds": round(ingest_end - started, 2),
            **_cancel_figures("cancel_during_ingest", [ms for t, ms in latencies if t < ingest_end]),
            **_cancel_figures("cancel_while_steps_run", [ms for t, ms in latencies if t >= ingest_end]),
            "cancel_hops_ms": path}


def _cancel_figures(label: str, latencies: list[float]) -> dict[str, Any]:
    return {f"{label}_n": len(latencies),
            f"{label}_p50_ms": round(percentile(latencies, 50), 1) if latencies else None,
            f"{label}_p99_ms": round(percentile(latencies, 99), 1) if latencies else None}


def raw_round_trip(servers: str, samples: int) -> list[float]:
    """Two raw hops: produce to A, a consumer reads it and produces to B, a consumer reads B."""
    prefix = f"bench-rt-{random.randrange(1 << 30):x}."
    a, b = prefix + "a", prefix + "b"
    create_topic(servers, a, 1)
    create_topic(servers, b, 1)
    producer = Producer({"bootstrap.servers": servers, "linger.ms": 0, "enable.idempotence": True, "acks": "all"})
    def consumer(topic: str) -> Consumer:
        c = Consumer({"bootstrap.servers": servers, "group.id": f"{topic}-g", "fetch.wait.max.ms": 10,
                      "enable.auto.commit": False, "isolation.level": "read_committed"})
        c.assign([TopicPartition(topic, 0, -1)])
        return c
    ca, cb = consumer(a), consumer(b)
    for c in (ca, cb):
        c.consume(1, timeout=1.0)
    out = []
    for _ in range(samples):
        t0 = time.perf_counter()
        producer.produce(a, b"x")
        producer.flush()
        while not ca.consume(1, timeout=1.0):
            pass
        producer.produce(b, b"y")
        producer.flush()
        while not cb.consume(1, timeout=1.0):
            pass
        out.append((time.perf_counter() - t0) * 1000)
    ca.close()
    cb.close()
    return out


def hops(servers: str, args: argparse.Namespace) -> dict[str, Any]:
    raw = raw_round_trip(servers, args.probes)
    with Stack(app, servers, services=()) as stack:
        procs = services(stack, 1)
        try:
            results: dict[str, list[dict[str, Any]]] = {}
            for name in ("noop", "noop-gated"):
                finals = []
                with progress_bar(f"{args.probes} x {name}, one at a time", args.probes) as advance:
                    for i in range(args.probes):
                        stack.send(f"bench/{name}", {"key": f"k{i}"}, id=f"{name}-{i}")
                        final = stack.wait_run(lambda r, i=i, name=name: json.loads(r["event"])["id"] == f"{name}-{i}"
                                               and r["status"] == "Completed", timeout=60, what=f"{name} run")
                        finals.append(final)
                        advance(i + 1)
                        time.sleep(0.05)
                results[name] = finals
            dispatched = {}
            assert stack.runs is not None
            with stack.runs._cond:
                for state in stack.runs.records:
                    if state is not None and state["seq"] == 1 and state["inflight_at"] is not None:
                        dispatched[state["run_id"]] = state["inflight_at"]
        finally:
            stop_services(procs)
    hop = [f["steps"][0]["completed_at"] - dispatched[f["run_id"]] for f in results["noop"][1:]]
    gated_hop = [f["steps"][0]["completed_at"] - dispatched[f["run_id"]] for f in results["noop-gated"][1:]]
    gate = [f["gate_wait_ms"] / 2 for f in results["noop-gated"][1:]]
    plain_gate = [f["gate_wait_ms"] for f in results["noop"]]
    run_ms = [f["ended_at"] - f["queued_at"] for f in results["noop"][1:]]
    return {"hop_p50_ms": percentile(hop, 50), "hop_p99_ms": percentile(hop, 99),
            "raw_two_hops_p50_ms": round(percentile(raw, 50), 2), "raw_two_hops_p99_ms": round(percentile(raw, 99), 2),
            "hop_over_raw_p50": round(percentile(hop, 50) / percentile(raw, 50), 2),
            "noop_run_p50_ms": percentile(run_ms, 50),
            "gated_hop_p50_ms": percentile(gated_hop, 50),
            "gate_per_point_p50_ms": percentile(gate, 50), "gate_per_point_p99_ms": percentile(gate, 99),
            "gate_without_cancel_rules_ms": max(plain_gate)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=2000)
    ap.add_argument("--sleepers", type=int, default=50, help="unrelated sleeping runs cancelled during the load")
    ap.add_argument("--variants", default="sync:1,async:1,sync:2,async:2", help="variant:workers, comma separated")
    ap.add_argument("--probes", type=int, default=60, help="one-at-a-time runs for the hop and the gate")
    ap.add_argument("--timeout", type=float, default=180.0)
    args = ap.parse_args()
    figures: dict[str, Any] = {"throughput": []}
    with broker("steps") as servers:
        figures["latency"] = hops(servers, args)
        for spec in args.variants.split(","):
            variant, n = spec.split(":")
            figures["throughput"].append(throughput(servers, variant, int(n), args))
    rows = []
    for f in figures["throughput"]:
        rows.append((f"{f['runs']} x 200 ms {f['variant']}, {f['workers']} worker process(es)", f"{f['seconds']} s",
                     f"serial {f['serial_seconds']:.0f} s: x{f['speedup_vs_serial']}"))
        rows.append(("  cancel latency under that load", f"p50 {f['cancel_p50_ms']} ms / p99 {f['cancel_p99_ms']} ms",
                     f"{f['cancels']} unrelated runs"))
        rows.append((f"    sent during the ingest ({f['ingest_seconds']} s)",
                     f"p50 {f['cancel_during_ingest_p50_ms']} ms / p99 {f['cancel_during_ingest_p99_ms']} ms",
                     f"{f['cancel_during_ingest_n']} cancels"))
        rows.append(("    sent while the steps run", f"p50 {f['cancel_while_steps_run_p50_ms']} ms / p99 "
                     f"{f['cancel_while_steps_run_p99_ms']} ms", f"{f['cancel_while_steps_run_n']} cancels"))
        for phase, hop in f["cancel_hops_ms"].items():
            rows.append((f"    {phase.replace('_', ' ')}, hop by hop (p50/max)",
                         ", ".join(f"{hop[h]['p50']:.0f}/{hop[h]['max']:.0f}" for h in HOPS if h in hop),
                         "ms: matcher, canceller, run owner, its commit + read"))
    lat = figures["latency"]
    rows.append(("worker hop (owner->worker->owner)", f"p50 {lat['hop_p50_ms']} ms / p99 {lat['hop_p99_ms']} ms",
                 f"raw 2-hop round trip p50 {lat['raw_two_hops_p50_ms']} ms (x{lat['hop_over_raw_p50']})"))
    rows.append(("gate per point (cancel rules)", f"p50 {lat['gate_per_point_p50_ms']} ms / p99 "
                 f"{lat['gate_per_point_p99_ms']} ms",
                 f"without cancel rules: {lat['gate_without_cancel_rules_ms']} ms"))
    console.print(results_table("steps side by side", rows))
    emit("steps", figures)


if __name__ == "__main__":
    main()
