"""bench/scale.py's moving parts: the service processes, its readers of ``runs`` and ``system-events``, its
producer of events and the API noise. The phases and the figures are in bench/scale.py."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Consumer, Producer, TopicPartition

from bench import _common as c
from bench.steps import wait_until
from pipeline.kafka.client import producer_config
from pipeline.serde import CANCEL_SIGNAL, EVENT, RUN_COMMAND, RUN_STATE, Catalog, Serde, default_catalog
from pipeline.serde.models import Event

ROOT = Path(__file__).resolve().parents[1]
APP = "bench.scale_app:app"
SLEEPING = "Sleeping"
CANCELLED_EVENT = "inngest/function.cancelled"


# --------------------------------------------------------------------------- the status peek


def _zigzag(buf: bytes, pos: int) -> tuple[int, int]:
    """One Avro int/long (zigzag varint) at ``pos``: (value, position after it)."""
    shift = result = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7


class StatusPeek:
    """A run state's status without decoding the record.

    Decoding every state of a million runs (several each) would cost the bench's process a core's worth of
    fastavro while the services it measures share two. In the Avro binary encoding the status enum is a varint
    after the fields before it; where those are all strings, bytes, ints or longs, they are skipped by their
    lengths. The plan is derived per writer schema (by fingerprint) from the catalog, so a schema that moves the
    status or puts another type before it is read by a full decode instead, never misread."""

    SKIPPABLE = ("string", "bytes", "int", "long")

    def __init__(self, catalog: Catalog | None = None) -> None:
        catalog = catalog or default_catalog()
        self.serde = Serde(catalog)
        self.plans: dict[bytes, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        for fingerprint, entry in catalog.by_fingerprint.items():
            if entry.name == RUN_STATE and (plan := self.plan(entry.parsed)) is not None:
                self.plans[fingerprint] = plan

    @classmethod
    def plan(cls, parsed: dict[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        """(types of the fields before ``status``, the status symbols), or None if it cannot be peeked."""
        before: list[str] = []
        for fld in parsed["fields"]:
            kind = fld["type"]
            if fld["name"] == "status":
                if isinstance(kind, dict) and kind.get("type") == "enum":
                    return tuple(before), tuple(kind["symbols"])
                return None
            if kind not in cls.SKIPPABLE:
                return None
            before.append(kind)
        return None

    def status(self, payload: bytes) -> str:
        plan = self.plans.get(payload[2:10])
        if plan is None:
            return str(self.serde.decode_as(RUN_STATE, payload)["status"])
        kinds, symbols = plan
        pos = 10
        for kind in kinds:
            value, pos = _zigzag(payload, pos)
            if kind in ("string", "bytes"):
                pos += value
        index, _ = _zigzag(payload, pos)
        return symbols[index]


# --------------------------------------------------------------------------- services


class Service:
    """One ``pipeline run <service>`` process, with its log file; restartable under the same instance id."""

    def __init__(self, name: str, env: dict[str, str], logs: Path, api_port: int) -> None:
        self.name = name
        extra = ["--host", "127.0.0.1", "--port", str(api_port)] if name == "api" else ["--app", APP]
        self.argv = [sys.executable, "-m", "pipeline.cli", "run", name, *extra]
        self.env = dict(env, PIPELINE_INSTANCE_ID=f"{env['PIPELINE_TOPIC_PREFIX']}{name}")
        self.log = logs / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, log_level: str | None = None) -> None:
        env = self.env if log_level is None else dict(self.env, PIPELINE_LOG_LEVEL=log_level)
        with self.log.open("ab") as out:
            # cwd: the run's own folder, so whatever a service keeps on a relative path stays with this run
            self.proc = subprocess.Popen(self.argv, env=env, cwd=self.log.parent, stdout=out,
                                         stderr=subprocess.STDOUT)

    def check(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{self.name} is not running (exit {self.proc and self.proc.returncode}); "
                               f"the end of {self.log}:\n{tail}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def memory(self) -> dict[str, float]:
        return c.proc_memory_mib(self.proc.pid) if self.proc is not None else {}


# --------------------------------------------------------------------------- readers and writers


class Asleep:
    """Follows ``runs`` (read_committed, from the start): each run's latest status, and how many sleep."""

    def __init__(self, servers: str, topic: str) -> None:
        self.peek = StatusPeek()
        self.latest: dict[bytes, str] = {}
        self.sleeping = 0
        self.states = 0
        self.lock = threading.Lock()
        self.reader = c.Reader(servers, topic, on_batch=self._batch)

    def _batch(self, msgs: list[Any], now: float) -> None:
        with self.lock:
            for msg in msgs:
                key, value = msg.key(), msg.value()
                old = self.latest.pop(key, None) if value is None else self.latest.get(key)
                new = None if value is None else self.peek.status(value)
                if new is not None:
                    self.latest[key] = new
                    self.states += 1
                self.sleeping += (new == SLEEPING) - (old == SLEEPING)

    def close(self) -> None:
        self.reader.close()


class Cancelled:
    """Follows ``system-events`` (read_committed): when each import's ``function.cancelled`` became readable
    (perf_counter, when the reader's consume returned it)."""

    def __init__(self, servers: str, topic: str) -> None:
        self.serde = Serde()
        self.at: dict[str, float] = {}
        self.applied_ms: dict[str, int] = {}  # the event's ts: when the run owner applied the cancel
        self.other = 0
        self.reader = c.Reader(servers, topic, on_batch=self._batch)

    def _batch(self, msgs: list[Any], now: float) -> None:
        for msg in msgs:
            record = self.serde.decode_as(EVENT, msg.value())
            if record["name"] != CANCELLED_EVENT:
                self.other += 1
                continue
            import_id = json.loads(record["data"])["event"]["data"]["importId"]
            self.at.setdefault(import_id, now)
            self.applied_ms.setdefault(import_id, record["ts"])

    def wait(self, import_id: str, timeout: float, what: str) -> float:
        wait_until(lambda: import_id in self.at, timeout, what)
        return self.at[import_id]

    def close(self) -> None:
        self.reader.close()


class Events:
    """Produces events to ``events`` as ``pipeline send`` does (its encoding and client settings), batched."""

    def __init__(self, servers: str, topic: str) -> None:
        self.topic = topic
        self.serde = Serde()
        self.failed: list[str] = []
        self.producer = Producer(producer_config(servers))

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.failed.append(str(err))

    def encode(self, name: str, import_id: str) -> tuple[str, bytes]:
        event = Event(name=name, data={"importId": import_id}).with_defaults()
        return event.id, self.serde.encode(EVENT, event.to_record())

    def produce(self, key: str, value: bytes) -> float:
        """Produce one encoded event; returns perf_counter just before the produce call."""
        while True:
            try:
                sent = time.perf_counter()
                self.producer.produce(self.topic, key=key, value=value, on_delivery=self._delivered)
                self.producer.poll(0)
                return sent
            except BufferError:
                self.producer.poll(0.05)

    def send(self, name: str, import_id: str) -> float:
        return self.produce(*self.encode(name, import_id))

    def flush(self) -> None:
        if self.producer.flush(120) or self.failed:
            raise RuntimeError(f"events not delivered: {self.failed[:3] or 'flush timed out'}")


class Noise:
    """``rate`` events/s of a name nobody listens to, through ``POST /e/{key}``, ``batch`` events a request."""

    def __init__(self, port: int, rate: float, batch: int) -> None:
        self.port, self.rate, self.batch = port, rate, batch
        self.sent = 0
        self.errors: list[str] = []
        self.started = self.stopped = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="noise", daemon=True)

    def start(self) -> None:
        if self.rate > 0:
            self._thread.start()

    def _run(self) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30) as client:
            self.started = due = time.perf_counter()
            while not self._stop.is_set():
                body = [{"name": "scale/noise", "data": {"n": self.sent + k}} for k in range(self.batch)]
                try:
                    answer = client.post("/e/scale", json=body)
                    if answer.status_code == 200:
                        self.sent += self.batch
                    else:
                        self.errors.append(f"{answer.status_code}: {answer.text[:200]}")
                except httpx.HTTPError as exc:
                    self.errors.append(repr(exc))
                due += self.batch / self.rate
                self._stop.wait(max(0.0, due - time.perf_counter()))
            self.stopped = time.perf_counter()

    def stop(self) -> dict[str, Any]:
        if self.rate <= 0 or self._thread.ident is None:
            return {"noise_events": 0}
        self._stop.set()
        self._thread.join(30)
        return {"noise_events": self.sent, "noise_events_per_s": round(c.rate(self.sent, self.stopped - self.started)),
                "noise_errors": len(self.errors), "noise_first_errors": self.errors[:3]}


# --------------------------------------------------------------------------- where a cancel waited


HOPS = ("produce", "matcher", "canceller", "owner", "commit_and_read")


def tail(servers: str, topic: str, start: dict[int, int], timeout: float = 120.0) -> list[Any]:
    """The records of ``topic`` from ``start`` (offsets per partition) up to its end offsets as of now,
    uncommitted ones too (a record's time is when it was produced or, on ``events``, received). Done when the
    consumer's position passes each end: the last offsets may be transaction markers, never delivered."""
    end = c.end_offsets(servers, topic)
    todo = {p: o for p, o in end.items() if start.get(p, 0) < o}
    consumer = Consumer({"bootstrap.servers": servers, "group.id": "bench-scale-tail", "enable.auto.commit": False,
                         "isolation.level": "read_uncommitted"})
    out: list[Any] = []
    try:
        consumer.assign([TopicPartition(topic, p, start.get(p, 0)) for p in todo])
        deadline = time.monotonic() + timeout
        while todo:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: not at the end offsets {todo} within {timeout}s")
            out += [m for m in consumer.consume(1000, timeout=0.5) if m.error() is None and m.value() is not None]
            for tp in consumer.position([TopicPartition(topic, p) for p in todo]):
                if tp.offset >= todo[tp.partition]:
                    del todo[tp.partition]
        return out
    finally:
        consumer.close()


def cancel_hops(servers: str, topics: dict[str, str], starts: dict[str, dict[int, int]],
                sent: dict[str, tuple[str, float]], cancelled: Cancelled) -> dict[str, dict[str, float]]:
    """Per cancel event (``sent``: event id -> (import id, wall time just before produce)), in ms: **produce**
    (→ the broker's receive time on ``events``), **matcher** (→ its signal's record time on ``cancel-index``),
    **canceller** (→ its cancel command's record time on ``run-commands``), **owner** (→ the cancelled event's
    ts: when the owner applied it), **commit_and_read** (→ readable by the bench's read_committed reader). Read
    back from the topics' tails after ``starts``: one clock, this machine's."""
    serde = Serde()
    received = {msg.key().decode(): msg.timestamp()[1] for msg in tail(servers, topics["events"], starts["events"])
                if msg.key() is not None and msg.key().decode() in sent}
    signalled: dict[str, int] = {}
    for msg in tail(servers, topics["cancel-index"], starts["cancel-index"]):
        name, record = serde.decode(msg.value())
        if name == CANCEL_SIGNAL:
            signalled.setdefault(record["event_id"], msg.timestamp()[1])
    commanded: dict[str, int] = {}
    for msg in tail(servers, topics["run-commands"], starts["run-commands"]):
        name, record = serde.decode(msg.value())
        if name == RUN_COMMAND and record["kind"] == "cancel" and record["source_id"]:
            commanded.setdefault(record["source_id"], msg.timestamp()[1])
    wall = time.time() - time.perf_counter()  # the readers' perf_counter times on the wall clock
    hops: dict[str, dict[str, float]] = {}
    for event_id, (import_id, sent_at) in sent.items():
        marks = (sent_at * 1000, received.get(event_id), signalled.get(event_id), commanded.get(event_id),
                 cancelled.applied_ms.get(import_id),
                 (cancelled.at[import_id] + wall) * 1000 if import_id in cancelled.at else None)
        if all(m is not None for m in marks):
            hops[event_id] = {h: round(float(b) - float(a), 1)  # type: ignore[arg-type]
                              for h, a, b in zip(HOPS, marks, marks[1:], strict=False)}
    return hops
