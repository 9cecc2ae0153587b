"""Shared helpers of the benchmarks: a throwaway broker, unique topics, raw confluent-kafka loops, output.

Nothing here is part of the runtime. The raw loops are written with confluent-kafka only (no
``pipeline`` code) so they are an honest baseline for the shared ``ServiceLoop``; they use the
same client settings as the loop (see ``RAW_PRODUCER`` / ``RAW_CONSUMER``, and ``RAW_TX_PRODUCER`` for the
transactional copy) so that a ratio measures the loop, not a configuration difference.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/x.py` from anywhere works without PYTHONPATH
    sys.path.insert(0, str(ROOT))

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: E402
from rich.table import Table  # noqa: E402

console = Console(stderr=True)
out = Console()


def _throwaway_state_dir() -> None:
    """Point the services' state stores (``PIPELINE_STATE_DIR``) at a directory of this bench run, removed at exit.

    Every bench makes fresh topics and groups, so its stores are never reused by a later run; in the per-user
    default directory they piled up (about 1 GiB after a day of benches). The services a bench starts, in its own
    process or as children, inherit the variable. A directory the caller set is left alone.
    """
    if os.environ.get("PIPELINE_STATE_DIR"):
        return
    state = tempfile.mkdtemp(prefix="pipeline-bench-state-")
    os.environ["PIPELINE_STATE_DIR"] = state
    atexit.register(shutil.rmtree, state, ignore_errors=True)


_throwaway_state_dir()

ENV_BOOTSTRAP = "PIPELINE_BOOTSTRAP_SERVERS"

#: The loop's producer settings (pipeline/kafka/client.py), written out by hand for the raw baselines.
RAW_PRODUCER: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 5,
    "batch.num.messages": 10000,
    "compression.type": "lz4",
    "partitioner": "murmur2_random",
}
#: What the loop's producer_config adds for a transactional producer, by hand: librdkafka retries
#: AddOffsetsToTxn after CONCURRENT_TRANSACTIONS (the previous commit's markers still being written)
#: after retry.backoff.ms, 100 ms by default. The raw transactional copy uses the same, so the EOS
#: ratio compares code, not backoff settings.
RAW_TX_PRODUCER: dict[str, Any] = {
    "retry.backoff.ms": 10,
    "retry.backoff.max.ms": 100,
}
#: The loop's consumer settings, by hand.
RAW_CONSUMER: dict[str, Any] = {
    "enable.auto.commit": False,
    "auto.offset.reset": "earliest",
    "isolation.level": "read_committed",
    "fetch.wait.max.ms": 50,
    "session.timeout.ms": 10000,
    "heartbeat.interval.ms": 1000,
}


# --------------------------------------------------------------------------- broker and topics


@contextlib.contextmanager
def broker(kind: str) -> Iterator[str]:
    """A Kafka bootstrap for one bench: ``PIPELINE_BOOTSTRAP_SERVERS`` if set, else a fresh embedded broker
    on free ports (unique cluster name), destroyed at the end."""
    ext = os.environ.get(ENV_BOOTSTRAP, "").strip()
    if ext:
        console.print(f"[bold]broker[/]: using {ENV_BOOTSTRAP}={ext}")
        yield ext
        return
    from pipeline.broker import embedded

    embedded.reap_orphans()
    name = f"bench-{kind}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    with console.status(f"starting embedded Kafka broker {name} (free ports)..."):
        try:
            servers = embedded.start(1, name, port=0, use_env=False, ephemeral=True, timeout=180)
        except BaseException:
            embedded.destroy(name)
            raise
    console.print(f"[bold]broker[/]: embedded {name} at {servers} (ready in {time.monotonic() - started:.1f}s)")
    try:
        yield servers
    finally:
        import gc

        gc.collect()  # clients caught in reference cycles go now, not after the broker (no reconnect noise)
        with console.status(f"destroying embedded broker {name}..."):
            embedded.destroy(name)


def unique_prefix(kind: str) -> str:
    return f"bench-{kind}-{uuid.uuid4().hex[:8]}."


def create_topic(servers: str, name: str, partitions: int = 3, config: dict[str, str] | None = None) -> None:
    admin = AdminClient({"bootstrap.servers": servers})
    for fut in admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1,
                                             config=config or {})], operation_timeout=30).values():
        fut.result()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # metadata propagation
        meta = admin.list_topics(topic=name, timeout=10).topics.get(name)
        if meta is not None and meta.error is None and len(meta.partitions) == partitions:
            return
        time.sleep(0.05)
    raise RuntimeError(f"topic {name} did not appear")


def end_offsets(servers: str, topic: str) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": servers, "group.id": "bench-watermarks", "enable.auto.commit": False})
    try:
        meta = c.list_topics(topic, timeout=10).topics[topic]
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in meta.partitions}
    finally:
        c.close()


def commit_group_offsets(servers: str, group: str, topic: str, offsets: dict[int, int]) -> None:
    """Commit ``offsets`` for ``group`` without joining it (a simple-consumer commit)."""
    c = Consumer({"bootstrap.servers": servers, "group.id": group, "enable.auto.commit": False})
    try:
        c.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False)
    finally:
        c.close()


class CommitWatcher:
    """Polls a group's committed offsets until they reach targets; records when they did."""

    def __init__(self, servers: str, group: str, targets: dict[tuple[str, int], int], interval: float = 0.02) -> None:
        self.targets = targets
        self.interval = interval
        self.done_at: float | None = None
        self.committed = 0
        self._c = Consumer({"bootstrap.servers": servers, "group.id": group, "enable.auto.commit": False})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="commit-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        tps = [TopicPartition(t, p) for (t, p) in self.targets]
        try:
            while not self._stop.is_set():
                try:
                    got = self._c.committed(tps, timeout=5)
                except Exception:  # coordinator not ready yet
                    time.sleep(self.interval)
                    continue
                now = time.perf_counter()
                self.committed = sum(max(tp.offset, 0) for tp in got)
                if all(tp.offset >= self.targets[(tp.topic, tp.partition)] for tp in got):
                    self.done_at = now
                    return
                time.sleep(self.interval)
        finally:
            self._c.close()

    def wait(self, timeout: float, progress: Callable[[int], None] | None = None) -> float:
        deadline = time.monotonic() + timeout
        while self._thread.is_alive() and time.monotonic() < deadline:
            if progress:
                progress(self.committed)
            time.sleep(0.1)
        self._stop.set()
        self._thread.join(10)
        if self.done_at is None:
            raise TimeoutError(f"committed {self.committed} of {sum(self.targets.values())} within {timeout}s")
        if progress:
            progress(sum(self.targets.values()))
        return self.done_at


class Reader:
    """Counts records readable on a topic (read_committed, all partitions from the start), in a thread.

    ``first``/``last`` are the arrival times (perf_counter when ``consume`` returned) of the first and
    of the ``expect``-th record. ``on_batch`` may inspect each batch (runs in the reader thread).
    ``start``: offsets per partition to start from (default: the beginning).

    It consumes eagerly: it waits for the first record only, then takes what is already fetched.
    librdkafka's ``consume(1000, timeout=0.05)`` returns only once 1000 records are there or the 50 ms
    are over, which would date a lone record up to 50 ms late (25 ms on average) and inflate every
    latency measured with it."""

    def __init__(self, servers: str, topic: str, expect: int | None = None, *,
                 on_batch: Callable[[list[Any], float], None] | None = None, start: dict[int, int] | None = None,
                 **conf: Any) -> None:
        self.expect = expect
        self.count = 0
        self.first: float | None = None
        self.last: float | None = None
        self.on_batch = on_batch
        self._done = threading.Event()
        self._stop = threading.Event()
        self._c = Consumer({"bootstrap.servers": servers, "group.id": f"bench-reader-{uuid.uuid4().hex[:8]}",
                            "enable.auto.commit": False, "isolation.level": "read_committed",
                            "fetch.wait.max.ms": 10, **conf})
        meta = self._c.list_topics(topic, timeout=10).topics[topic]
        self._c.assign([TopicPartition(topic, p, (start or {}).get(p, -2)) for p in meta.partitions])
        self._thread = threading.Thread(target=self._run, name=f"read-{topic}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                msgs = self._c.consume(1, timeout=0.05)
                if not msgs:
                    continue
                now = time.perf_counter()  # when the first record arrived
                msgs += self._c.consume(999, timeout=0)
                good = [m for m in msgs if m.error() is None]
                if not good:
                    continue
                if self.first is None:
                    self.first = now
                self.count += len(good)
                if self.on_batch is not None:
                    self.on_batch(good, now)
                if self.expect is not None and self.count >= self.expect and self.last is None:
                    self.last = now
                    self._done.set()
        finally:
            self._c.close()

    def wait(self, timeout: float, progress: Callable[[int], None] | None = None) -> None:
        deadline = time.monotonic() + timeout
        while not self._done.wait(0.1):
            if progress:
                progress(self.count)
            if time.monotonic() > deadline:
                raise TimeoutError(f"read {self.count} of {self.expect} within {timeout}s")
        if progress:
            progress(self.count)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


# --------------------------------------------------------------------------- raw confluent-kafka pieces


def raw_produce(servers: str, topic: str, records: Iterator[tuple[Any, ...]], total: int,
                progress: Callable[[int], None] | None = None, **extra: Any) -> float:
    """Produce ``records`` — (key, value) or (key, value, partition) — with the loop's producer settings.

    Returns seconds from the first ``produce`` until every record is acknowledged."""
    p = Producer({"bootstrap.servers": servers, **RAW_PRODUCER, **extra})
    started = time.perf_counter()
    produce = p.produce
    for i, rec in enumerate(records):
        part = rec[2] if len(rec) > 2 else -1
        while True:
            try:
                produce(topic, value=rec[1], key=rec[0], partition=part)
                break
            except BufferError:
                p.poll(0.01)
        if i % 5000 == 0:
            p.poll(0)
            if progress:
                progress(i)
    left = p.flush(120)
    seconds = time.perf_counter() - started
    if left:
        raise RuntimeError(f"{left} records not delivered")
    if progress:
        progress(total)
    return seconds


def raw_consume(servers: str, topic: str, total: int, batch: int = 1000,
                progress: Callable[[int], None] | None = None) -> float:
    """Read ``total`` records with a plain Consumer (partitions assigned from the start) and ``consume(batch)``.

    Returns seconds from ``assign`` to the last record (fetching included: nothing is prefetched before)."""
    c = Consumer({"bootstrap.servers": servers, "group.id": f"bench-rawconsume-{uuid.uuid4().hex[:8]}",
                  **RAW_CONSUMER})
    meta = c.list_topics(topic, timeout=10).topics[topic]
    n = 0
    try:
        started = time.perf_counter()
        c.assign([TopicPartition(topic, p, -2) for p in meta.partitions])
        while n < total:
            msgs = c.consume(batch, timeout=1.0)
            for m in msgs:
                if m.error() is None:
                    n += 1
            if progress:
                progress(n)
        return time.perf_counter() - started
    finally:
        c.close()


@dataclass
class CopyResult:
    first_consumed: float | None = None
    consumed: int = 0
    batches: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def raw_copy(servers: str, src: str, dst: str, *, group: str, mode: str, batch: int, stop: threading.Event,
             result: CopyResult, txid: str | None = None, producer_extra: dict[str, Any] | None = None) -> None:
    """A hand-written consume → produce copy loop with confluent-kafka only.

    ``mode``:
      * ``plain``: produce each batch, ``poll(0)``, commit the batch's offsets asynchronously (no flush);
      * ``alo``: at-least-once like the loop without transactions: produce, ``flush``, commit synchronously;
      * ``eos``: one transaction per consumed batch (begin, produce, send_offsets_to_transaction, commit),
        with ``RAW_TX_PRODUCER`` (retry.backoff.ms=10) as the loop's transactional producer has.
    """
    c = Consumer({"bootstrap.servers": servers, "group.id": group, **RAW_CONSUMER})
    pconf = {"bootstrap.servers": servers, **RAW_PRODUCER}
    if mode == "eos":
        pconf.update({"transactional.id": txid or f"{group}-tx", "transaction.timeout.ms": 30000,
                      **RAW_TX_PRODUCER})
    pconf.update(producer_extra or {})
    p = Producer(pconf)
    if mode == "eos":
        p.init_transactions(60)
    c.subscribe([src])
    produce = p.produce
    try:
        while not stop.is_set():
            msgs = c.consume(batch, timeout=0.1)
            if not msgs:
                continue
            if result.first_consumed is None:
                result.first_consumed = time.perf_counter()
            offsets: dict[tuple[str, int], int] = {}
            good = 0
            if mode == "eos":
                p.begin_transaction()
            for m in msgs:
                if m.error() is not None:
                    if m.error().code() != KafkaError._PARTITION_EOF:
                        raise RuntimeError(str(m.error()))
                    continue
                offsets[(m.topic(), m.partition())] = m.offset() + 1
                good += 1
                while True:
                    try:
                        produce(dst, value=m.value(), key=m.key())
                        break
                    except BufferError:
                        p.poll(0.05)
            p.poll(0)
            tps = [TopicPartition(t, part, o) for (t, part), o in offsets.items()]
            if mode == "eos":
                p.send_offsets_to_transaction(tps, c.consumer_group_metadata(), 30)
                p.commit_transaction(60)
            elif mode == "alo":
                p.flush(60)
                c.commit(offsets=tps, asynchronous=False)
            else:
                c.commit(offsets=tps, asynchronous=True)
            result.consumed += good
            result.batches += 1
        p.flush(30)
    finally:
        c.close()


def warm_broker(servers: str, records: int, batch: int = 500, timeout: float = 60.0) -> float:
    """Untimed warm-up of a fresh broker (JIT, transaction and group coordinators): a raw transactional copy
    of ``records`` small records between two throwaway topics. Returns its seconds."""
    prefix = unique_prefix("warmup")
    src, dst = f"{prefix}src", f"{prefix}dst"
    create_topic(servers, src)
    create_topic(servers, dst)
    started = time.perf_counter()
    raw_produce(servers, src, ((f"w{i}".encode(), b"w" * 100) for i in range(records)), records)
    reader = Reader(servers, dst, expect=records)
    stop = threading.Event()
    thread = run_thread(raw_copy, servers, src, dst, group=f"{prefix}g", mode="eos", batch=batch, stop=stop,
                        result=CopyResult())
    try:
        with progress_bar("broker warm-up (untimed)", records) as update:
            reader.wait(timeout, update)
    finally:
        stop.set()
        thread.join(60)
        reader.close()
    return time.perf_counter() - started


def run_thread(target: Callable[..., Any], *args: Any, **kwargs: Any) -> threading.Thread:
    errors: list[BaseException] = []

    def wrapped() -> None:
        try:
            target(*args, **kwargs)
        except BaseException as exc:  # surfaced by the caller through thread.errors
            errors.append(exc)
            console.print_exception()

    t = threading.Thread(target=wrapped, daemon=True)
    t.errors = errors  # type: ignore[attr-defined]
    t.start()
    return t


# --------------------------------------------------------------------------- progress, memory, output


@contextlib.contextmanager
def progress_bar(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr; yields ``update(completed)``."""
    prog = Progress(TextColumn(f"[bold]{label:<34}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=False)
    with prog:
        task = prog.add_task(label, total=total)
        yield lambda n: prog.update(task, completed=min(n, total))


def copy_until_committed(name: str, servers: str, group: str, targets: dict[tuple[str, int], int], timeout: float,
                         stop: Callable[[], object], thread: threading.Thread) -> float:
    """Show ``name``'s progress until ``group``'s committed offsets cover ``targets``, then stop the copier and
    join its thread; returns when the offsets were seen (perf_counter), the end of a timed copy."""
    watcher = CommitWatcher(servers, group, targets)
    with progress_bar(name, sum(targets.values())) as update:
        try:
            return watcher.wait(timeout, update)
        finally:
            stop()
            thread.join(60)


def rss_mib() -> float:
    """Resident set size of this process in MiB (from /proc, else getrusage's peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def proc_memory_mib(pid: int) -> dict[str, float]:
    """Another process's memory from /proc/<pid>/status, in MiB: ``rss`` (VmRSS, now) and ``peak`` (VmHWM, the
    highest RSS it has had). Empty if the process is gone or /proc is not there."""
    fields = {"VmRSS:": "rss", "VmHWM:": "peak"}
    found: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key = line.split(":", 1)[0] + ":"
            if key in fields:
                found[fields[key]] = round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return {}
    return found


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None}


def results_table(title: str, rows: list[tuple[str, str, str]]) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("note")
    for row in rows:
        table.add_row(*row)
    return table


def emit(bench: str, figures: dict[str, Any]) -> None:
    """The final line: every figure as one JSON object (paste it into notes)."""
    payload = {"bench": bench, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(), **figures}
    print(json.dumps(payload, sort_keys=False, default=str), flush=True)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    import math

    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def rate(n: float, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("nan")


def fmt_rate(x: float) -> str:
    return f"{x:,.0f}/s"
