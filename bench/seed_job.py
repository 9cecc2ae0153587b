"""The seed job end to end: N imports, then N cancels, each cancel cleaned up; this runtime against Quix Streams.

Run (from the repository root). Quix Streams 3.28 pins confluent-kafka < 2.13, so it gets a venv of its own
(the runtime keeps its client), found at bench/.venv-quix by default:

    python3 -m venv bench/.venv-quix && bench/.venv-quix/bin/pip install -e '.[bench]'
    PYTHONPATH=. python bench/seed_job.py                  # 20,000 + 20,000, ~1.5 minutes
    PYTHONPATH=. python bench/seed_job.py --imports 2000   # a quick one

The job is the seed's "cleanup after function cancellation": N ``contacts/import.requested`` events with
distinct importIds, then N ``contacts/import.cancelled`` events for the same ids. Every import run is
cancelled, and for every cancellation a cleanup runs that logs ``Import was cancelled: <id>``.

* **This runtime** runs ``examples/newsletter.py`` unchanged (its import sleeps between batches:
  ``NEWSLETTER_BATCH_PAUSE_S=3600`` so that no import finishes before its cancel) as ``pipeline dev`` runs it:
  the API in dev's process; matcher, run owner, canceller and one worker each a child process. The events go
  through the HTTP API, ``POST /e/{key}`` with ``--batch`` (500) events a request, one request at a time: all
  the imports, then all the cancels. Timed from the first request until the N-th cleanup run's
  ``inngest/function.finished`` is readable (read_committed) on ``system-events``: the run is Completed and
  committed. One untimed import/cancel pair goes through first, so no process start is timed. Reported:
  events/s = 2N / seconds, and the ingest (first request to the last 200) apart.
* **Quix Streams** (``bench/quix_join.py``): the same 2N events, as JSON keyed by importId, are produced to two
  topics (3 partitions, as the runtime's) before the apps start. A ``join`` app joins each cancel to its import
  (``join_asof``, or ``--quix-join apply``: a stateful ``apply``) and produces a "cancelled" record per pair; a
  ``cleanup`` app consumes them, logs the same line and counts. Both are exactly-once apps in their own
  processes; the cleanup app is started first and the join app once the cleanup app's group is stable. The
  join runs as a service (until SIGTERM); the cleanup stops after N cleanups. Timed from the join app's first
  processed message until the cleanup app has committed its N-th cleanup (its ``app.run(count=N)``
  returned, which commits). Run once per ``--quix-commit-interval``: Quix's default is 5 s, a checkpoint (a
  transaction) every 5 s, and the cleanup reads the join's output only once a checkpoint commits it.

The ratio is this runtime's events/s over the best Quix events/s of the run. The services and the Quix apps
run one after the other on one broker, never at once. Logging: the services run with
``PIPELINE_LOG_LEVEL=WARNING`` and the Quix cleanup's logger is at WARNING, so the cleanup lines of both are
formatted by neither.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from bench import _common as c
from bench._cpu import cpu_between, tree_cpu
from bench.steps import free_port, stop_services, wait_until
from pipeline.config import Settings
from pipeline.kafka import topics as t
from pipeline.kafka.client import FETCH_WAIT_MAX_MS, admin_config, consume_available
from pipeline.serde import EVENT, Serde

ROOT = Path(__file__).resolve().parents[1]
IMPORT, CANCEL = "contacts/import.requested", "contacts/import.cancelled"
QUIX_VENV = ROOT / "bench" / ".venv-quix" / "bin" / "python"
IMPORT_FN = "newsletter-app-import-all-contacts"
CLEANUP_FN = "newsletter-app-cleanup-cancelled-import"


def import_ids(n: int) -> list[str]:
    return [f"imp-{i:06d}" for i in range(n)]


# --------------------------------------------------------------------------- this runtime


class Outcomes:
    """Reads ``system-events`` (read_committed, from the start) and notes, per import id, when its run's
    ``function.cancelled`` and its cleanup's ``function.finished`` became readable."""

    def __init__(self, servers: str, topic: str) -> None:
        self.serde = Serde()
        self.cancelled: dict[str, float] = {}
        self.cleaned: dict[str, float] = {}
        self.cleanup_results: set[str] = set()
        self._stop = threading.Event()
        self.consumer = Consumer({"bootstrap.servers": servers, "group.id": f"bench-outcomes-{uuid.uuid4().hex[:8]}",
                                  "isolation.level": "read_committed", "fetch.wait.max.ms": FETCH_WAIT_MAX_MS,
                                  "enable.auto.commit": False})
        meta = self.consumer.list_topics(topic, timeout=10).topics[topic]
        self.consumer.assign([TopicPartition(topic, p, -2) for p in meta.partitions])
        self.thread = threading.Thread(target=self._run, name="outcomes", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        decode = self.serde.decode_as
        while not self._stop.is_set():
            msgs = consume_available(self.consumer, 1000, 0.05)
            now = time.time()
            for msg in msgs:
                if msg.error() or msg.value() is None:
                    continue
                record = decode(EVENT, msg.value())
                name = record["name"]
                if name not in ("inngest/function.cancelled", "inngest/function.finished"):
                    continue
                data = json.loads(record["data"])
                if name == "inngest/function.cancelled" and data["function_id"] == IMPORT_FN:
                    self.cancelled.setdefault(data["event"]["data"]["importId"], now)
                elif name == "inngest/function.finished" and data["function_id"] == CLEANUP_FN:
                    # the cleanup's trigger is the function.cancelled event, which carries the import's event
                    self.cleaned.setdefault(data["event"]["data"]["event"]["data"]["importId"], now)
                    if "result" in data:
                        self.cleanup_results.add(str(data["result"]))
        self.consumer.close()

    def close(self) -> None:
        self._stop.set()
        self.thread.join(10)


def start_dev(env: dict[str, str], port: int) -> subprocess.Popen:
    """``pipeline dev --app examples.newsletter:app`` on the bench's broker and topics; returns once its API answers."""
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "dev", "--app", "examples.newsletter:app",
                             "--port", str(port)], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"pipeline dev exited with {proc.returncode}")
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, 90, "pipeline dev ready")
    return proc


def post_events(client: httpx.Client, name: str, ids: list[str], batch: int, done: list[int]) -> None:
    for i in range(0, len(ids), batch):
        answer = client.post("/e/bench", json=[{"name": name, "data": {"importId": x}} for x in ids[i:i + batch]])
        if answer.status_code != 200:
            raise RuntimeError(f"POST /e answered {answer.status_code}: {answer.text[:300]}")
        done[0] += len(ids[i:i + batch])


def records_written(servers: str, prefix: str, pairs: int) -> dict[str, float]:
    """Committed records (tombstones included) per import/cancel pair on every topic whose name holds ``prefix``.

    Read after the job, read_committed, so aborted writes and transaction markers do not count. It is the
    structural side of the comparison: each record is a produce, a consume and usually an encode and a decode
    somewhere. Topics with nothing are left out.
    """
    admin = AdminClient(admin_config(servers))
    consumer = Consumer({"bootstrap.servers": servers, "group.id": f"bench-count-{uuid.uuid4().hex[:8]}",
                         "isolation.level": "read_committed", "enable.auto.commit": False})
    counts: dict[str, float] = {}
    try:
        for name, meta in sorted(admin.list_topics(timeout=10).topics.items()):
            if prefix not in name:
                continue
            ends = {}
            for p in meta.partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)
                if high > low:
                    ends[p] = (low, high)
            if not ends:
                continue
            consumer.assign([TopicPartition(name, p, low) for p, (low, _) in ends.items()])
            seen, idle = 0, 0
            while idle < 3:
                batch = consumer.consume(5000, 0.2)
                seen += sum(1 for m in batch if m.error() is None)
                positions = consumer.position([TopicPartition(name, p) for p in ends])
                if all(tp.offset >= ends[tp.partition][1] for tp in positions):
                    break
                idle = 0 if batch else idle + 1
            if seen:  # Quix's state changelogs are named changelog__<group>--<topic>--<store>
                label = f"state changelog {name.split('--')[-1]}" if name.startswith("changelog__") else \
                    name[name.index(prefix) + len(prefix):]
                counts[label] = round(seen / pairs, 2)
    finally:
        consumer.close()
    return counts


def runtime_job(servers: str, args: argparse.Namespace) -> dict[str, Any]:
    n = args.imports
    settings = Settings(bootstrap_servers=servers, topic_prefix=c.unique_prefix("seed"), partitions=3)
    t.create_topics(AdminClient(admin_config(servers)), settings)
    port = free_port()
    env = dict(os.environ, PIPELINE_BOOTSTRAP_SERVERS=servers, PIPELINE_TOPIC_PREFIX=settings.topic_prefix,
               PIPELINE_PARTITIONS=str(settings.partitions), PIPELINE_LOG_LEVEL="WARNING",
               NEWSLETTER_BATCH_PAUSE_S="3600", PYTHONPATH=str(ROOT))
    outcomes = Outcomes(servers, settings.topic(t.SYSTEM_EVENTS))
    with c.console.status("starting pipeline dev (examples.newsletter:app)..."):
        proc = start_dev(env, port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            # one untimed pair through every service (process start, first transactions)
            post_events(client, IMPORT, ["warm"], 1, [0])
            post_events(client, CANCEL, ["warm"], 1, [0])
            wait_until(lambda: "warm" in outcomes.cleaned, 60, "the warm-up cleanup")
            ids = import_ids(n)
            sent = [0]
            with c.progress_bar(f"runtime: {n:,} + {n:,} events via POST /e", 2 * n) as advance:
                started = time.time()
                cpu_before = tree_cpu(proc.pid)
                sender = c.run_thread(lambda: (post_events(client, IMPORT, ids, args.batch, sent),
                                               post_events(client, CANCEL, ids, args.batch, sent)))
                while sender.is_alive():
                    advance(sent[0])
                    time.sleep(0.1)
                ingested = time.time()
                if sender.errors:  # type: ignore[attr-defined]
                    raise RuntimeError("sending the events failed") from sender.errors[0]  # type: ignore[attr-defined]
                advance(sent[0])
            with c.progress_bar(f"runtime: {n:,} cleanups Completed", n) as advance:
                deadline = time.monotonic() + args.timeout
                while (done := len(outcomes.cleaned) - 1) < n:
                    advance(done)
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise TimeoutError(f"{done} of {n} cleanups within {args.timeout}s "
                                           f"(pipeline dev {'running' if proc.poll() is None else 'exited'})")
                    time.sleep(0.1)
                advance(n)
            cpu = cpu_between(cpu_before, tree_cpu(proc.pid))
        finished = max(at for key, at in outcomes.cleaned.items() if key != "warm")
        cancelled = max(at for key, at in outcomes.cancelled.items() if key != "warm")
        seconds = finished - started
        figures = {"imports": n, "batch": args.batch, "seconds": round(seconds, 2),
                   "events_per_s": round(2 * n / seconds), "ingest_seconds": round(ingested - started, 2),
                   "ingest_events_per_s": round(2 * n / (ingested - started)),
                   "last_cancelled_after_s": round(cancelled - started, 2),
                   "last_cleanup_after_ingest_s": round(finished - ingested, 2),
                   "imports_cancelled": len(outcomes.cancelled) - 1, "cleanups": len(outcomes.cleaned) - 1,
                   "distinct_cleanup_results": len(outcomes.cleanup_results) - 1,
                   "cpu_seconds": cpu, "cpu_ms_per_event": round(1000 * sum(cpu.values()) / (2 * n), 3)}
    finally:
        outcomes.close()
        stop_services([proc])
    figures["records_per_pair"] = records_written(servers, settings.topic_prefix, n + 1)  # + the warm-up pair
    if figures["imports_cancelled"] != n or figures["distinct_cleanup_results"] != n:
        raise AssertionError(f"runtime: not every import cancelled and cleaned up once: {figures}")
    return figures


# --------------------------------------------------------------------------- Quix Streams


def group_stable(admin: AdminClient, group: str) -> bool:
    """Whether the group has joined and its members have their partitions (the Quix app is consuming)."""
    try:
        desc = admin.describe_consumer_groups([group], request_timeout=5)[group].result()
    except Exception:
        return False
    return desc.state.name == "STABLE" and any(m.assignment.topic_partitions for m in desc.members)


def quix(role: str, servers: str, topics: dict[str, str], group: str, n: int, args: argparse.Namespace,
         commit_interval: float) -> subprocess.Popen:
    cmd = [args.quix_python, str(ROOT / "bench" / "quix_join.py"), role, "--broker", servers, "--group", group,
           "--count", str(n), "--cancelled", topics["cancelled"], "--commit-interval", str(commit_interval)]
    if role == "join":
        cmd += ["--imports", topics["imports"], "--cancels", topics["cancels"], "--join", args.quix_join]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)


def result_of(proc: subprocess.Popen, timeout: float, what: str) -> dict[str, Any]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise TimeoutError(f"the Quix {what} app did not finish within {timeout}s") from None
    if proc.returncode != 0:
        raise RuntimeError(f"the Quix {what} app exited with {proc.returncode}")
    return json.loads(out.strip().splitlines()[-1])


def quix_job(servers: str, args: argparse.Namespace, commit_interval: float) -> dict[str, Any]:
    n = args.imports
    prefix = c.unique_prefix("quix")
    topics = {name: f"{prefix}{name}" for name in ("imports", "cancels", "cancelled")}
    for topic in topics.values():
        c.create_topic(servers, topic, 3)
    ids = import_ids(n)

    def events(name: str) -> Any:
        for x in ids:
            event = {"name": name, "data": {"importId": x}, "id": uuid.uuid4().hex, "ts": int(time.time() * 1000)}
            yield x.encode(), json.dumps(event).encode()

    produce_imports = c.raw_produce(servers, topics["imports"], events(IMPORT), n)
    time.sleep(0.01)  # every cancel's timestamp after every import's (the as-of join looks back in time)
    produce_cancels = c.raw_produce(servers, topics["cancels"], events(CANCEL), n)
    label = f"Quix ({args.quix_join}, commit_interval {commit_interval:g} s)"
    with c.console.status(f"{label}: starting the cleanup app..."):
        cleanup = quix("cleanup", servers, topics, f"{prefix}cleanup", n, args, commit_interval)
        admin = AdminClient(admin_config(servers))
        try:
            wait_until(lambda: cleanup.poll() is not None or group_stable(admin, f"{prefix}cleanup"), 60,
                       "the Quix cleanup app's group")
        except BaseException:
            cleanup.kill()
            raise
    with c.console.status(f"{label}: join and cleanup running..."):
        launched = time.time()
        join = quix("join", servers, topics, f"{prefix}join", n, args, commit_interval)
        try:
            cleaned = result_of(cleanup, args.timeout, "cleanup")
            join.terminate()  # the join is a service: it runs until SIGTERM
            joined = result_of(join, 60, "join")
        finally:
            for proc in (join, cleanup):
                if proc.poll() is None:
                    proc.kill()
    seconds = cleaned["committed_at"] - joined["first_at"]
    # the pre-produced events, the join's state changelog (its name holds the join's group) and its output
    records = records_written(servers, prefix, n)
    return {"join": args.quix_join, "commit_interval_s": commit_interval, "seconds": round(seconds, 2),
            "records_per_pair": records, "events_per_s": round(2 * n / seconds),
            "join_processed_s": round(joined["all_processed_at"] - joined["first_at"], 2),
            "cleanup_processed_s": round(cleaned["all_processed_at"] - joined["first_at"], 2),
            "launch_to_first_s": round(joined["first_at"] - launched, 2),
            "cleanups": cleaned["processed"], "produce_seconds": round(produce_imports + produce_cancels, 2),
            "cpu_seconds": {"join": joined["cpu_seconds"], "cleanup": cleaned["cpu_seconds"]},
            "cpu_ms_per_event": round(1000 * (joined["cpu_seconds"] + cleaned["cpu_seconds"]) / (2 * n), 3)}


# --------------------------------------------------------------------------- main


def versions(quix_python: str) -> dict[str, str]:
    """confluent-kafka and librdkafka on each side, and Quix Streams."""
    import confluent_kafka

    probe = ("import confluent_kafka, quixstreams, importlib.metadata as m; "
             "print(m.version('quixstreams'), confluent_kafka.__version__, confluent_kafka.libversion()[0])")
    quix, quix_ck, quix_rd = subprocess.run([quix_python, "-c", probe], capture_output=True, text=True,
                                            check=True).stdout.split()
    return {"runtime_confluent_kafka": confluent_kafka.__version__,
            "runtime_librdkafka": confluent_kafka.libversion()[0],
            "quixstreams": quix, "quix_confluent_kafka": quix_ck, "quix_librdkafka": quix_rd}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--imports", type=int, default=20_000, help="imports, and as many cancels")
    ap.add_argument("--batch", type=int, default=500, help="events per POST /e request")
    ap.add_argument("--quix-join", choices=("asof", "apply"), default="asof",
                    help="the Quix join: join_asof, or a stateful apply on the concatenated topics")
    ap.add_argument("--quix-commit-interval", default="5,0.5",
                    help="Quix commit_interval values, comma separated: one Quix run each (default 5,0.5)")
    ap.add_argument("--quix-python", default=str(QUIX_VENV) if QUIX_VENV.exists() else sys.executable,
                    help="the interpreter of the Quix apps (default bench/.venv-quix/bin/python if it exists: "
                         "quixstreams pins confluent-kafka < 2.13, so it gets a venv of its own)")
    ap.add_argument("--sides", default="quix,runtime", help="which sides to run, in this order")
    ap.add_argument("--warmup", type=int, default=50_000, help="records of the untimed broker warm-up; 0 = none")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds allowed per side")
    args = ap.parse_args()
    intervals = [float(x) for x in args.quix_commit_interval.split(",")]
    sides = args.sides.split(",")
    c.console.print(f"[bold]command[/]: PYTHONPATH=. python bench/seed_job.py --imports {args.imports} "
                    f"--batch {args.batch} --quix-join {args.quix_join} --quix-commit-interval "
                    f"{args.quix_commit_interval} --sides {args.sides} --warmup {args.warmup}")
    figures: dict[str, Any] = {"imports": args.imports, "versions": versions(args.quix_python), "quix": []}
    with c.broker("seed") as servers:
        if args.warmup:
            c.warm_broker(servers, args.warmup)
        for side in sides:
            if side == "quix":
                for interval in intervals:
                    figures["quix"].append(quix_job(servers, args, interval))
            elif side == "runtime":
                figures["runtime"] = runtime_job(servers, args)
            else:
                raise SystemExit(f"unknown side {side!r}")
    rows: list[tuple[str, str, str]] = []
    n = args.imports
    runtime = figures.get("runtime")
    if runtime:
        rows.append((f"runtime: {n:,} + {n:,} events, end to end", f"{runtime['events_per_s']:,}/s",
                     f"{runtime['seconds']} s, first POST to the last cleanup Completed"))
        rows.append((f"  ingest (POST /e, batches of {runtime['batch']})", f"{runtime['ingest_events_per_s']:,}/s",
                     f"{runtime['ingest_seconds']} s; last import cancelled at {runtime['last_cancelled_after_s']} s, "
                     f"last cleanup {runtime['last_cleanup_after_ingest_s']} s after the ingest"))
        rows.append(("  CPU per event (services, not the broker)", f"{runtime['cpu_ms_per_event']} ms",
                     ", ".join(f"{k} {v:.1f} s" for k, v in runtime["cpu_seconds"].items())))
        rows.append(("  records written per import/cancel pair", f"{sum(runtime['records_per_pair'].values()):.1f}",
                     ", ".join(f"{k} {v:g}" for k, v in runtime["records_per_pair"].items())))
    for q in figures["quix"]:
        rows.append((f"Quix {q['join']}, commit_interval {q['commit_interval_s']:g} s", f"{q['events_per_s']:,}/s",
                     f"{q['seconds']} s; join done at {q['join_processed_s']} s, cleanups at "
                     f"{q['cleanup_processed_s']} s; CPU {q['cpu_ms_per_event']} ms per event"))
        rows.append(("  records written per import/cancel pair", f"{sum(q['records_per_pair'].values()):.1f}",
                     ", ".join(f"{k} {v:g}" for k, v in q["records_per_pair"].items())))
    if runtime and figures["quix"]:
        best = max(q["events_per_s"] for q in figures["quix"])
        figures["ratio_runtime_over_best_quix"] = round(runtime["events_per_s"] / best, 3)
        rows.append(("ratio runtime / best Quix", f"{figures['ratio_runtime_over_best_quix']:.2f}", "target ≥ 2"))
    c.out.print(c.results_table(f"the seed job: {n:,} imports, {n:,} cancels, {n:,} cleanups", rows))
    c.emit("seed_job", figures)


if __name__ == "__main__":
    main()
