"""``POST /e/{key}`` (the event API) against a raw confluent-kafka producer of the same records, in one run.

Run (from the repository root):

    PYTHONPATH=. python bench/ingest.py                          # 20,000 events in batches of 500, 4 connections
    PYTHONPATH=. python bench/ingest.py --repeat 3 --profile /tmp/api.txt     # py-spy on the API (pip install py-spy)
    PYTHONPATH=. python bench/ingest.py --api-root /work/wt-old  # the API of another checkout (A/B in one sitting)

What it measures, on one fresh embedded broker (or ``PIPELINE_BOOTSTRAP_SERVERS``):

* **API**: the API as ``pipeline run api`` serves it (uvicorn, its own process, its readers running: the runs and
  cancellations tables and the recent-events ring), ``--events`` events POSTed in batches of ``--batch`` over
  ``--connections`` concurrent keep-alive connections (httpx), as a fleet of producers would. Each request must
  answer 200 with ``{"ids": [...], "status": 200}`` (one id per event, all distinct); the API answers only
  once Kafka has acknowledged every event (acks=all). Timed from the first request sent to the last answer.
  The events carry no id (the API gives each a ULID) unless ``--with-ids``. The API process's CPU time over
  the run (utime + stime from /proc) is reported per event, a figure the machine's other load moves less.
* **raw**: a plain confluent-kafka Producer with the API producer's settings (acks=all, idempotent, linger 5 ms,
  lz4) sends the same number of records, Avro-encoded as the API encodes them (encoded before the clock), and
  waits for every delivery report: the floor for getting those events into Kafka from Python.

The two alternate ``--repeat`` times (API first) after an untimed warm-up of both; the median run of each counts
and the JSON's ``all_rates`` has every run. The events topic's end offsets are checked to have grown by exactly
the events sent.

``--profile FILE`` samples the API process with py-spy (``pip install py-spy``; ``--rate`` 250 Hz, idle threads
left out) during the timed API runs, writes the folded stacks to FILE and prints the top frames by inclusive and
by own samples, and the share of samples per thread.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import _common as c
import httpx
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from ulid import ULID

from pipeline.config import Settings
from pipeline.kafka import topics as t
from pipeline.kafka.client import admin_config
from pipeline.serde import EVENT, Serde

EVENT_KEY = "bench-ingest-key"


def make_events(n: int, data_bytes: int, with_ids: bool) -> list[dict[str, Any]]:
    """Events as an SDK sends them: a name out of 20, a ``data`` object of about ``data_bytes``, no user."""
    pad = "x" * max(0, data_bytes - 60)
    out = []
    for i in range(n):
        ev: dict[str, Any] = {"name": f"bench/ingest.e{i % 20}",
                              "data": {"i": i, "account_id": f"acct-{i % 1000}", "plan": "pro", "pad": pad}}
        if with_ids:
            ev["id"] = f"bench-{i:09d}"
        out.append(ev)
    return out


def raw_records(events: list[dict[str, Any]]) -> list[tuple[bytes, bytes]]:
    """(key, value) as the API writes them: the event id as key, the Avro Event record (ids and ts filled)."""
    serde = Serde()
    now = int(time.time() * 1000)
    out = []
    for ev in events:
        eid = ev.get("id") or str(ULID())
        record = {"id": eid, "name": ev["name"], "data": json.dumps(ev.get("data") or {}, separators=(",", ":")),
                  "user": json.dumps(ev.get("user") or {}, separators=(",", ":")), "ts": now, "v": None}
        out.append((eid.encode(), serde.encode(EVENT, record)))
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of each thread of a process, as ``name:tid`` (librdkafka names its threads ``rdk:...``;
    Python's threads are all called after the process: py-spy's profile names them by tid)."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        out[f"{name}:{task.name}"] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def git_rev(root: Path) -> str:
    try:
        return subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


class Api:
    """``pipeline run api`` in its own process, on the bench's broker and topics."""

    def __init__(self, servers: str, prefix: str, root: Path) -> None:
        self.port = free_port()
        self.root = root
        self.env = {**os.environ, "PIPELINE_BOOTSTRAP_SERVERS": servers, "PIPELINE_TOPIC_PREFIX": prefix,
                    "PIPELINE_EVENT_KEY": EVENT_KEY, "PIPELINE_LOG_LEVEL": "WARNING", "PYTHONPATH": str(root)}
        where = subprocess.run([sys.executable, "-c", "import pipeline; print(pipeline.__file__)"], env=self.env,
                               cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        self.code = f"{where} ({git_rev(root)})"
        self.proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "run", "api", "--host", "127.0.0.1",
                                      "--port", str(self.port)], env=self.env, cwd=root,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the API exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError("the API did not become ready")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


async def post_all(url: str, bodies: list[bytes], sizes: list[int], connections: int,
                   progress: Any = None) -> tuple[float, list[str]]:
    """POST every body over ``connections`` concurrent connections; (seconds first send → last answer, ids)."""
    queue: collections.deque[int] = collections.deque(range(len(bodies)))
    ids: list[list[str]] = [[] for _ in bodies]
    done = 0
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60.0) as client:
        # open the connections before the clock starts, as a fleet of producers has them open
        await asyncio.gather(*(client.get("/healthz") for _ in range(connections)))

        async def sender() -> None:
            nonlocal done
            while queue:
                i = queue.popleft()
                r = await client.post(f"/e/{EVENT_KEY}", content=bodies[i],
                                      headers={"content-type": "application/json"})
                answer = r.json()
                if r.status_code != 200 or answer.get("status") != 200 or len(answer.get("ids", ())) != sizes[i]:
                    raise RuntimeError(f"batch {i}: {r.status_code} {r.text[:300]}")
                ids[i] = answer["ids"]
                done += sizes[i]
                if progress is not None:
                    progress(done)

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(connections)))
        seconds = time.perf_counter() - started
    return seconds, [i for batch in ids for i in batch]


def run_api(api: Api, servers: str, topic: str, events: list[dict[str, Any]], args: argparse.Namespace,
            label: str) -> dict[str, Any]:
    batches = [events[i:i + args.batch] for i in range(0, len(events), args.batch)]
    bodies = [json.dumps(b, separators=(",", ":")).encode() for b in batches]
    before = sum(c.end_offsets(servers, topic).values())
    cpu0 = cpu_seconds(api.proc.pid)
    threads0 = thread_cpu(api.proc.pid)
    with c.progress_bar(label, len(events)) as update:
        seconds, ids = asyncio.run(post_all(api.url, bodies, [len(b) for b in batches], args.connections, update))
    cpu = cpu_seconds(api.proc.pid) - cpu0
    threads = {k: v - threads0.get(k, 0.0) for k, v in thread_cpu(api.proc.pid).items()}
    busiest = dict(sorted(((k, round(v, 3)) for k, v in threads.items() if v > 0), key=lambda kv: -kv[1])[:8])
    written = sum(c.end_offsets(servers, topic).values()) - before
    if written != len(events) or len(set(ids)) != len(events):
        raise RuntimeError(f"{label}: {written} records written, {len(set(ids))} distinct ids, "
                           f"for {len(events)} events")
    given = [ev["id"] for ev in events if "id" in ev]
    if given and given != ids:
        raise RuntimeError(f"{label}: the ids answered are not the events' ids")
    return {"events": len(events), "seconds": round(seconds, 3), "rate": round(c.rate(len(events), seconds), 1),
            "api_cpu_seconds": round(cpu, 3), "api_cpu_us_per_event": round(cpu / len(events) * 1e6, 1),
            "api_cpu_by_thread": busiest}


def run_raw(servers: str, topic: str, records: list[tuple[bytes, bytes]], label: str) -> dict[str, Any]:
    """Produce every record and wait for every delivery report (acks=all): first produce → last report."""
    delivered = [0]
    failed: list[str] = []

    def report(err: Any, msg: Any) -> None:
        if err is not None:
            failed.append(str(err))
        delivered[0] += 1

    p = Producer({"bootstrap.servers": servers, **c.RAW_PRODUCER, "message.max.bytes": 4 * 1024 * 1024})
    # connected, its producer id granted and the topic's leaders known before the clock, as the API's producer is
    p.produce(topic, value=records[0][1], key=b"bench-raw-warm-up")
    if p.flush(30):
        raise RuntimeError(f"{label}: the warm-up record was not delivered")
    n = len(records)
    with c.progress_bar(label, n) as update:
        started = time.perf_counter()
        produce = p.produce
        for i, (key, value) in enumerate(records):
            while True:
                try:
                    produce(topic, value=value, key=key, on_delivery=report)
                    break
                except BufferError:
                    p.poll(0.01)
            if i % 500 == 499:
                p.poll(0)
        while delivered[0] < n:
            p.poll(0.05)
            update(delivered[0])
        seconds = time.perf_counter() - started
        update(n)
    if failed:
        raise RuntimeError(f"{label}: {len(failed)} records failed: {failed[0]}")
    return {"events": n, "seconds": round(seconds, 3), "rate": round(c.rate(n, seconds), 1)}


class Sampler:
    """py-spy sampling the API process (folded stacks with thread names), started and stopped around the runs."""

    def __init__(self, pid: int, path: Path, rate: int) -> None:
        self.path = path
        self.parts: list[Path] = []
        self.pid = pid
        self.rate = rate
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        part = self.path.with_suffix(f".part{len(self.parts)}")
        self.parts.append(part)
        here = Path(sys.executable).parent / "py-spy"  # the venv's, else the one on PATH
        spy = str(here) if here.exists() else "py-spy"
        self.proc = subprocess.Popen([spy, "record", "--pid", str(self.pid), "--rate", str(self.rate),
                                      "--format", "raw", "--threads", "--nonblocking", "-o", str(part)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # py-spy attaches

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(30)
            self.proc = None

    def summary(self, top: int = 25) -> str:
        stacks: collections.Counter[str] = collections.Counter()
        for part in self.parts:
            if part.exists():
                for line in part.read_text().splitlines():
                    stack, _, count = line.rpartition(" ")
                    if stack and count.isdigit():
                        stacks[stack] += int(count)
                part.unlink()
        self.path.write_text("".join(f"{s} {n}\n" for s, n in stacks.most_common()))
        total = sum(stacks.values()) or 1
        inclusive: collections.Counter[str] = collections.Counter()
        own: collections.Counter[str] = collections.Counter()
        threads: collections.Counter[str] = collections.Counter()
        for stack, n in stacks.items():
            frames = stack.split(";")
            threads[frames[0]] += n
            for frame in set(frames[1:]):
                inclusive[frame] += n
            own[frames[-1]] += n
        lines = [f"py-spy: {total} samples of the API process at {self.rate} Hz (idle left out); folded in {self.path}",
                 "", "threads:"]
        lines += [f"  {n / total:6.1%}  {name}" for name, n in threads.most_common(10)]
        lines += ["", "inclusive, frames of pipeline/ code:"]
        ours = [(frame, n) for frame, n in inclusive.most_common() if "pipeline/" in frame]
        lines += [f"  {n / total:6.1%}  {frame}" for frame, n in ours[:top]]
        lines += ["", "own:"]
        lines += [f"  {n / total:6.1%}  {frame}" for frame, n in own.most_common(top)]
        return "\n".join(lines)


def median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ordered = sorted(runs, key=lambda r: r["rate"])
    return {**ordered[(len(ordered) - 1) // 2], "all_rates": [r["rate"] for r in runs]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=500, help="events per POST")
    ap.add_argument("--connections", type=int, default=4, help="concurrent HTTP connections")
    ap.add_argument("--data-bytes", type=int, default=120, help="about the size of each event's data as JSON")
    ap.add_argument("--with-ids", action="store_true", help="the events carry their own ids")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each (alternating); the median counts")
    ap.add_argument("--warmup", type=int, default=5_000, help="events of one untimed run of each first")
    ap.add_argument("--api-root", type=Path, default=c.ROOT,
                    help="the checkout whose pipeline/ the API process runs (default: this one)")
    ap.add_argument("--profile", type=Path, default=None, metavar="FILE",
                    help="sample the API with py-spy during the timed runs; folded stacks to FILE")
    ap.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    args = ap.parse_args()
    n = args.events
    root = args.api_root.resolve()
    c.console.print(f"[bold]command[/]: PYTHONPATH=. python bench/ingest.py --events {n} --batch {args.batch} "
                    f"--connections {args.connections} --data-bytes {args.data_bytes} --repeat {args.repeat} "
                    f"--warmup {args.warmup}" + (" --with-ids" if args.with_ids else "")
                    + (f" --api-root {root}" if root != c.ROOT else "")
                    + (f" --profile {args.profile}" if args.profile else ""))
    events = make_events(n, args.data_bytes, args.with_ids)
    records = raw_records(events)
    figures: dict[str, Any] = {"events": n, "batch": args.batch, "connections": args.connections,
                               "data_bytes": args.data_bytes, "with_ids": args.with_ids, "repeat": args.repeat,
                               "warmup": args.warmup, "record_bytes": round(sum(len(v) for _, v in records) / n, 1),
                               "bench_rev": git_rev(c.ROOT)}
    profile_text = None
    with c.broker("ingest") as servers:
        prefix = c.unique_prefix("ingest")
        settings = Settings(bootstrap_servers=servers, topic_prefix=prefix)
        t.create_topics(AdminClient(admin_config(servers)), settings)
        topic = settings.topic(t.EVENTS)
        api = Api(servers, prefix, root)
        figures["api_code"] = api.code
        c.console.print(f"[bold]api[/]: {api.code} on {api.url}")
        try:
            with c.console.status("waiting for the API's /healthz"):
                api.wait_ready()
            if args.warmup:
                warm = make_events(args.warmup, args.data_bytes, args.with_ids)
                run_api(api, servers, topic, warm, args, "API warm-up (untimed)")
                run_raw(servers, topic, raw_records(warm), "raw warm-up (untimed)")
            sampler = Sampler(api.proc.pid, args.profile, args.rate) if args.profile else None
            runs: dict[str, list[dict[str, Any]]] = {"api": [], "raw": []}
            for k in range(args.repeat):
                if sampler is not None:
                    sampler.start()
                runs["api"].append(run_api(api, servers, topic, events, args, f"POST /e, run {k + 1}"))
                if sampler is not None:
                    sampler.stop()
                runs["raw"].append(run_raw(servers, topic, records, f"raw producer, run {k + 1}"))
            if sampler is not None:
                profile_text = sampler.summary()
        finally:
            api.stop()
    figures["api"] = median(runs["api"])
    figures["raw"] = median(runs["raw"])
    ratio = figures["api"]["rate"] / figures["raw"]["rate"]
    figures["ratio_api_vs_raw"] = round(ratio, 3)
    figures["target_api_ge_20000_per_s"] = figures["api"]["rate"] >= 20_000
    rows = [
        ("POST /e (API process)", c.fmt_rate(figures["api"]["rate"]),
         f"{args.connections} connections, batches of {args.batch}, answered after acks=all"),
        ("API CPU per event", f"{figures['api']['api_cpu_us_per_event']:.1f} µs", "utime + stime of the API process"),
        ("API CPU by thread", ", ".join(f"{k} {v:.2f}s" for k, v in figures["api"]["api_cpu_by_thread"].items()),
         "name:tid (rdk: = librdkafka)"),
        ("raw producer", c.fmt_rate(figures["raw"]["rate"]), "same records, acks=all, every delivery awaited"),
        ("ratio API / raw", f"{ratio:.3f}", "target: API ≥ 20,000 events/s"),
        ("all API runs", ", ".join(f"{r:,.0f}" for r in figures["api"]["all_rates"]), "events/s"),
        ("all raw runs", ", ".join(f"{r:,.0f}" for r in figures["raw"]["all_rates"]), "events/s"),
    ]
    c.out.print(c.results_table(f"ingest: {n:,} events of ~{figures['record_bytes']:.0f} B (Avro), "
                                f"batches of {args.batch}", rows))
    if profile_text:
        c.out.print(profile_text)
    c.emit("ingest", figures)


if __name__ == "__main__":
    main()
