"""Run your app's services in-process against a real broker, and wait for what they produce.

Public test API::

    from pipeline.testing.stack import Stack

    def test_import_is_cleaned_up(kafka_bootstrap):
        with Stack(app, kafka_bootstrap) as stack:            # unique topic prefix, topics created
            stack.send("contacts/import.requested", {"importId": "a"})
            run = stack.wait_run(lambda r: r["status"] == "Sleeping")
            stack.send("contacts/import.cancelled", {"importId": "a"})
            stack.wait_system_event("inngest/function.cancelled")

Each Stack gets its own topic prefix, so tests sharing one broker never see each other's data.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from ..config import Settings
from ..kafka import topics as t
from ..kafka.client import admin_config, consume_available, consumer_config, producer_config
from ..kafka.loop import run_in_thread
from ..kafka.watchdog import Watchdog
from ..sdk.app import Registry
from ..sdk.client import Inngest
from ..serde import EVENT, RUN_STATE, Serde, SerdeError
from ..serde.models import Event, event_record_to_dict


class TopicWatcher:
    """Tails a topic (all partitions, from the start, read_committed) into memory, decoding as it goes."""

    def __init__(self, servers: str, topic: str, decode: Callable[[bytes | None], Any]) -> None:
        self.topic = topic
        self.decode = decode
        self.records: list[Any] = []
        self.errors: list[str] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        config = consumer_config(servers, None)
        config["enable.partition.eof"] = False
        self._consumer = Consumer(config)
        self._next: dict[int, int] = dict.fromkeys(self._partitions_with_leaders(), -2)  # -2: the beginning
        self._consumer.assign([TopicPartition(topic, p, o) for p, o in self._next.items()])
        self._thread = threading.Thread(target=self._run, name=f"watch-{topic}", daemon=True)
        self._thread.start()

    def _partitions_with_leaders(self, timeout: float = 30.0) -> list[int]:
        """The topic's partitions, once each has a leader: on a brand-new cluster a topic just created may
        not be known to every broker yet, and an offset lookup sent then fails for good
        (UNKNOWN_TOPIC_OR_PART) instead of being retried, leaving the watcher blind."""
        deadline = time.monotonic() + timeout
        while True:
            meta = self._consumer.list_topics(self.topic, timeout=10).topics.get(self.topic)
            if meta is not None and meta.error is None and meta.partitions and all(
                    p.leader >= 0 for p in meta.partitions.values()):
                return sorted(meta.partitions)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.topic} has no leader for every partition after {timeout}s")
            time.sleep(0.2)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                for msg in consume_available(self._consumer, 500, 0.1):
                    if msg.error():
                        code = msg.error().code()
                        if code == KafkaError._PARTITION_EOF:
                            continue
                        self.errors.append(str(msg.error()))
                        if code == KafkaError.UNKNOWN_TOPIC_OR_PART:  # not retried by librdkafka: assign again
                            time.sleep(0.2)
                            self._consumer.assign([TopicPartition(self.topic, p, o) for p, o in self._next.items()])
                        continue  # other errors are transient (a broker restarting): librdkafka recovers
                    self._next[msg.partition()] = msg.offset() + 1
                    try:
                        value = self.decode(msg.value())
                    except SerdeError:
                        continue
                    with self._cond:
                        self.records.append(value)
                        self._cond.notify_all()
        finally:
            self._consumer.close()

    def wait(self, predicate: Callable[[list[Any]], Any], timeout: float, what: str) -> Any:
        """Wait until ``predicate(records)`` is truthy and return it; AssertionError with what was seen otherwise."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                result = predicate(self.records)
                if result:
                    return result
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = json.dumps(self.records[-10:], default=str)[:3000]
                    raise AssertionError(f"timed out after {timeout}s waiting for {what} on {self.topic}; "
                                         f"last seen: {seen}")
                self._cond.wait(min(left, 0.2))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


class Stack:
    """An app's matcher, executor and canceller on their own topics of a real broker."""

    def __init__(self, app: Inngest | list[Inngest], bootstrap: str, *, services: tuple[str, ...] = (
            "matcher", "run-owner", "canceller", "worker"), retry_backoff_ms: int = 200, partitions: int = 3,
                 stall_timeout_s: float | None = None, configure: Callable[[str, Any], None] | None = None,
                 **settings: Any) -> None:
        self.apps = app if isinstance(app, list) else [app]
        self.settings = Settings(bootstrap_servers=bootstrap, topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
                                 partitions=partitions, instance_id=uuid.uuid4().hex[:8], **settings)
        self.bootstrap = bootstrap
        self.services = services
        self.retry_backoff_ms = retry_backoff_ms
        self.configure = configure
        self.serde = Serde()
        self.loops: dict[str, Any] = {}
        self.threads: dict[str, threading.Thread] = {}
        self._producer = Producer(producer_config(bootstrap))
        # In-process crash-only: a service whose loop stalls (a Kafka call hung) is replaced by a fresh one with
        # the same instance id, which fences the stuck one, as `pipeline run` exits and is restarted.
        self.watchdog = Watchdog(stall_timeout_s, on_stall=self._replace) if stall_timeout_s else None
        self.replaced: list[tuple[str, float]] = []
        self._hearts: dict[int, str] = {}
        self.runs: TopicWatcher | None = None
        self.system_events: TopicWatcher | None = None

    # -- lifecycle -----------------------------------------------------------------------------------------

    def __enter__(self) -> Stack:
        t.create_topics(AdminClient(admin_config(self.bootstrap)), self.settings)
        self.runs = TopicWatcher(self.bootstrap, self.settings.topic(t.RUNS),
                                 lambda v: None if v is None else self.serde.decode_as(RUN_STATE, v))
        self.system_events = TopicWatcher(self.bootstrap, self.settings.topic(t.SYSTEM_EVENTS),
                                          self._system_event)
        for name in self.services:
            self.start_service(name)
        if self.watchdog is not None:
            self.watchdog.start()
        return self

    def _system_event(self, value: bytes | None) -> dict[str, Any]:
        if value is None:  # not written by the services (system-events is not compacted): skipped by the watcher
            raise SerdeError("a tombstone on system-events")
        return event_record_to_dict(self.serde.decode_as(EVENT, value))

    def __exit__(self, *exc: object) -> None:
        if self.watchdog is not None:
            self.watchdog.stop()
        for name in list(self.loops):
            self.stop_service(name)
        for watcher in (self.runs, self.system_events):
            if watcher is not None:
                watcher.close()

    def build_loop(self, name: str, **overrides: Any) -> Any:
        """A service loop (or the worker) for this stack's topics (not started), passed to ``configure(name,
        loop)`` if the stack has one (e.g. to give the run owner's cron ticks a test clock)."""
        from ..supervise import build_service

        settings = self.settings.model_copy(update=overrides) if overrides else self.settings
        options = {"retry_backoff_ms": self.retry_backoff_ms} if name == "run-owner" else {}
        loop = build_service(name, Registry(self.apps), settings, **options)
        if self.configure is not None:
            self.configure(name, loop)
        return loop

    def start_service(self, name: str, **overrides: Any) -> Any:
        """Build (with ``Settings`` ``overrides``, if any) and start service ``name`` in a thread."""
        loop = self.build_loop(name, **overrides)
        if self.watchdog is not None:
            self._hearts[id(self.watchdog.watch(loop.heart))] = name
        self.loops[name], self.threads[name] = loop, run_in_thread(loop)
        return loop

    def _replace(self, heart: Any, silent: float) -> None:
        """The watchdog's action here: abandon the stuck loop (its thread is blocked in librdkafka) and start
        a new one; the stuck one's producer and consumer are fenced, so it dies when its call returns."""
        name = self._hearts.pop(id(heart), None)
        if name is None or name not in self.loops:
            return
        self.replaced.append((name, silent))
        self.loops.pop(name).stop()
        self.threads.pop(name)
        self.start_service(name)

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for a ``pipeline run SERVICE`` subprocess on this stack's topics (tests kill those)."""
        import os

        return dict(os.environ, PIPELINE_BOOTSTRAP_SERVERS=self.bootstrap,
                    PIPELINE_TOPIC_PREFIX=self.settings.topic_prefix, PIPELINE_PARTITIONS=str(self.settings.partitions),
                    **extra)

    def stop_service(self, name: str) -> None:
        loop = self.loops.pop(name)
        loop.stop()
        self.threads.pop(name).join(30)
        registry = getattr(loop, "registry", None) or getattr(getattr(loop, "processor", None), "registry", None)
        if registry is not None and registry.follower is not None:  # its functions-topic reader (synced apps)
            registry.follower.stop()
            registry.follower = None

    # -- input ---------------------------------------------------------------------------------------------

    def send(self, name: str, data: dict[str, Any] | None = None, *, partition: int = -1, flush: bool = True,
             **fields: Any) -> str:
        """Produce one event to this stack's events topic (to ``partition`` if given); returns its id.

        ``flush=False`` leaves it in the producer's batch (a burst is then one request, not one round trip
        per event, as a real producer sends it); :meth:`flush` sends what is left."""
        event = Event(name=name, data=data or {}, **fields).with_defaults()
        value = self.serde.encode(EVENT, event.to_record())
        while True:
            try:
                self._producer.produce(self.settings.topic(t.EVENTS), key=event.id, value=value, partition=partition)
                break
            except BufferError:
                self._producer.poll(0.05)
        if flush:
            self.flush()
        return event.id

    def flush(self) -> None:
        """Wait until every event sent so far is acknowledged."""
        assert self._producer.flush(30) == 0

    # -- waiting -------------------------------------------------------------------------------------------

    def snapshot(self) -> str:
        """What each service is doing, for a failed wait's message: run statuses seen, each service's
        assignment, records processed and seconds since its loop last beat, and the watchers' errors."""
        statuses: dict[str, int] = {}
        for state in self.latest_runs().values():
            statuses[state["status"]] = statuses.get(state["status"], 0) + 1
        now = time.monotonic()
        lines = [f"run statuses: {statuses}"]
        for name, loop in self.loops.items():
            assigned = sorted(f"{tp.topic.rsplit('.', 1)[-1]}[{tp.partition}]"
                              for tp in getattr(loop, "assignment", []))
            lines.append(f"{name}: assigned={assigned} processed={getattr(loop, 'processed', '?')} "
                         f"silent={now - loop.heart.last:.1f}s alive={self.threads[name].is_alive()}")
        for watcher in (self.runs, self.system_events):
            if watcher is not None and watcher.errors:
                lines.append(f"watcher {watcher.topic}: {watcher.errors[-5:]}")
        return "\n".join(lines)

    def latest_runs(self) -> dict[str, dict[str, Any]]:
        """Each run's newest state seen so far."""
        assert self.runs is not None
        with self.runs._cond:
            out: dict[str, dict[str, Any]] = {}
            for state in self.runs.records:
                if state is not None:
                    out[state["run_id"]] = state
            return out

    def wait_run(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 30.0,
                 what: str = "a run") -> dict[str, Any]:
        """The newest state of the first run whose newest state satisfies ``predicate``."""
        assert self.runs is not None

        def check(records: list[Any]) -> Any:
            latest: dict[str, dict[str, Any]] = {}
            for state in records:
                if state is not None:
                    latest[state["run_id"]] = state
            for state in latest.values():
                if predicate(state):
                    return state
            return None

        found: dict[str, Any] = self.runs.wait(check, timeout, what)
        return found

    def wait_system_event(self, name: str, predicate: Callable[[dict[str, Any]], bool] = lambda e: True,
                          timeout: float = 30.0, count: int = 1) -> list[dict[str, Any]]:
        """Wait for ``count`` system events named ``name`` that satisfy ``predicate``."""
        assert self.system_events is not None

        def check(records: list[Any]) -> Any:
            hits = [e for e in records if e["name"] == name and predicate(e)]
            return hits if len(hits) >= count else None

        hits: list[dict[str, Any]] = self.system_events.wait(check, timeout, f"{count} x {name}")
        return hits

    def system_events_named(self, name: str) -> list[dict[str, Any]]:
        assert self.system_events is not None
        with self.system_events._cond:
            return [e for e in self.system_events.records if e["name"] == name]
