"""The ``functions`` topic: writing synced functions, and loading and following them into a Registry.

Every service that looks functions up (matcher, run owner, worker, API) reads the compacted topic whole when
it starts, before it takes any input, and then follows it on a thread of its own: a sync, a re-sync and a
wait name learned by the HTTP worker reach each of them within one fetch (``fetch.wait.max.ms`` 50 ms), and a
restarted service starts with every function synced so far. The topic has one partition, so records apply in
the order they were written. A record that cannot be read or compiled is logged and skipped (the previous
definition of that function stays), never fatal: one bad sync must not stop the services.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from ..config import Settings
from ..kafka import topics as t
from ..kafka.client import admin_config, bootstrap, consume_available, producer_config
from ..protocol.app_syncs import record_key
from ..protocol.records import AppSync, FunctionDef
from ..sdk.app import Registry
from ..sdk.definitions import DefinitionError
from ..sdk.synced import synced_function
from ..serde import APP_SYNC, FUNCTION_DEF, Serde, SerdeError
from .applied import ProgressReporter, end_offset

log = logging.getLogger("pipeline.apps")

LOAD_TIMEOUT_S = 10.0


class PublishFailed(RuntimeError):
    """The broker did not acknowledge every record of a sync (nothing is reported as synced)."""


def publish(producer: Producer, topic: str, records: Iterable[FunctionDef], removed: Iterable[str] = (),
            serde: Serde | None = None, timeout: float = 10.0) -> int:
    """Write function records (and tombstones for ``removed`` ids) and wait until the broker has them all.
    Returns the offset after the last one (what every matcher must have applied: :mod:`pipeline.apps.applied`),
    0 when there was nothing to write."""
    serde = serde or Serde()
    errors: list[str] = []
    end = [0]

    def delivered(err: Any, msg: Any) -> None:
        if err is not None:
            errors.append(str(err))
        elif msg.offset() is not None:
            end[0] = max(end[0], msg.offset() + 1)

    count = 0
    for record in records:
        producer.produce(topic, key=record["id"].encode(), value=serde.encode(FUNCTION_DEF, record),
                         on_delivery=delivered)
        count += 1
    for fn_id in removed:
        producer.produce(topic, key=fn_id.encode(), value=None, on_delivery=delivered)
        count += 1
    if count and producer.flush(timeout) > 0:
        raise PublishFailed(f"{count} function records not acknowledged within {timeout} s")
    if errors:
        raise PublishFailed("; ".join(errors))
    return end[0]


def publish_sync_result(producer: Producer, topic: str, record: AppSync, serde: Serde | None = None,
                        timeout: float = 10.0) -> None:
    """Write an app's last sync result (``app-syncs``, keyed by app) and wait until the broker has it."""
    errors: list[str] = []
    producer.produce(topic, key=record_key(record).encode(), value=(serde or Serde()).encode(APP_SYNC, record),
                     on_delivery=lambda err, _msg: errors.append(str(err)) if err is not None else None)
    if producer.flush(timeout) > 0:
        raise PublishFailed(f"the sync result was not acknowledged within {timeout} s")
    if errors:
        raise PublishFailed("; ".join(errors))


def sync_producer(settings: Settings) -> Producer:
    """A plain idempotent producer for function records (no transaction: each record stands alone)."""
    no_linger: dict[str, Any] = {"linger.ms": 0}
    return Producer(producer_config(bootstrap(settings), **no_linger))


class FunctionsFollower:
    """Reads the ``functions`` topic into a registry: :meth:`load` to the end, then :meth:`start` following."""

    def __init__(self, registry: Registry, settings: Settings) -> None:
        self.registry = registry
        self.topic = settings.topic(t.FUNCTIONS)
        self.serde = Serde()
        self.records: dict[str, FunctionDef] = {}  # the latest record per function id, as read
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap(settings), "group.id": "pipeline-functions-reader",
            "enable.auto.commit": False, "auto.offset.reset": "earliest", "fetch.wait.max.ms": 50,
            "topic.metadata.refresh.interval.ms": 5000,
        })
        self.consumer.assign([TopicPartition(self.topic, 0, OFFSET_BEGINNING)])
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.position = 0  # the offset after the last record applied to the registry
        self._applied = threading.Condition()
        self.reporter: ProgressReporter | None = None  # a matcher's: publishes ``position`` (pipeline.apps.applied)
        self.servers = bootstrap(settings)
        self._admin: AdminClient | None = None  # for catch_up's end offset, made at first use

    def load(self, timeout: float = LOAD_TIMEOUT_S) -> int:
        """Read up to the end offset as of now (blocking): the functions synced before this service started."""
        deadline = time.monotonic() + timeout
        while True:  # a topic created a moment ago may have no leader known yet: ask again until the deadline
            try:
                _low, high = self.consumer.get_watermark_offsets(TopicPartition(self.topic, 0), timeout=5)
                break
            except Exception as exc:  # noqa: BLE001 - no topic (an old deployment): nothing synced; followed anyway
                if time.monotonic() > deadline:
                    log.warning("functions topic not readable; no synced functions yet", extra={"error": str(exc)})
                    return 0
                time.sleep(0.2)
        while self.position < high and time.monotonic() < deadline:
            self._apply(self.consumer.consume(500, timeout=0.2))
        if self.position < high:
            log.warning("functions topic not read to its end at start", extra={"position": self.position, "end": high})
        return len(self.records)

    def report_to(self, reporter: ProgressReporter) -> None:
        """Publish the applied position through ``reporter`` from now on (a matcher's follower), starting now."""
        self.reporter = reporter
        reporter.report(self.position)

    def catch_up(self, timeout: float = LOAD_TIMEOUT_S) -> bool:
        """Block until every record written before this call is applied (the end offset as of now): a matcher
        does this on each assignment, before it processes a record (see :mod:`pipeline.apps.applied`)."""
        if self._admin is None:
            self._admin = AdminClient(admin_config(self.servers))
        try:
            high = end_offset(self._admin, self.topic)
        except Exception as exc:  # noqa: BLE001 - no topic or no broker: the follower reports its own errors
            log.warning("functions topic end not readable", extra={"error": str(exc)})
            return False
        with self._applied:
            if not self._applied.wait_for(lambda: self.position >= high, timeout):
                log.warning("functions topic not applied to its end in time",
                            extra={"position": self.position, "end": high})
                return False
        return True

    def start(self) -> None:
        """Follow the topic on a daemon thread until :meth:`stop`."""
        self._thread = threading.Thread(target=self._follow, name="functions-follower", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop following and close the consumer, but only once the follower thread is out of it: closing a
        librdkafka handle that another thread is inside ``consume`` with can abort the process."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            if self._thread.is_alive():
                log.warning("functions follower did not stop within 5 s: its consumer is left open")
                return
        self.consumer.close()

    def _follow(self) -> None:
        while not self._stop.is_set():
            try:
                # the first record with a wait, then what is already fetched: consume(500, 0.2) held every record
                # until 500 had come or 0.2 s had passed
                self._apply(consume_available(self.consumer, 500, 0.2))
                if self.reporter is not None:
                    self.reporter.report(self.position)
            except Exception:
                if self._stop.is_set():
                    return
                log.exception("functions follower failed a round")
                time.sleep(0.5)

    def _apply(self, msgs: list[Any]) -> None:
        final: dict[str, Any] = {}  # function id -> its compiled function, or None for a tombstone (last wins)
        position = self.position
        for msg in msgs:
            offset = msg.offset()
            if msg.error() is None and offset is not None:
                position = max(position, offset + 1)
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("functions topic error", extra={"error": str(err)})
                continue
            key = (msg.key() or b"").decode()
            if msg.value() is None:
                self.records.pop(key, None)
                final[key] = None
                continue
            try:
                record: FunctionDef = self.serde.decode_as(FUNCTION_DEF, msg.value())  # type: ignore[assignment]
                fn = synced_function(record)
            except (SerdeError, DefinitionError, ValueError, KeyError) as exc:
                log.warning("a synced function could not be read: skipped", extra={"function": key, "error": str(exc)})
                continue
            self.records[key] = record
            final[key] = fn
        if final:
            self.registry.put([fn for fn in final.values() if fn is not None],
                              [k for k, fn in final.items() if fn is None])
            log.info("synced functions applied", extra={"functions": sorted(final), "topic": self.topic})
        with self._applied:  # only now: a position published or waited for is one the registry holds
            self.position = position
            self._applied.notify_all()


def follow_functions(registry: Registry, settings: Settings) -> FunctionsFollower:
    """Load the synced functions into ``registry`` and follow them (once per registry: later calls return the
    follower already started)."""
    if registry.follower is None:
        follower = FunctionsFollower(registry, settings)
        follower.load()
        follower.start()
        registry.follower = follower
    follower_: FunctionsFollower = registry.follower
    return follower_
