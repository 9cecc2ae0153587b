"""The worker: runs handler invocations side by side and sends their outcomes back to the run owners.

Workers are where user code runs, apart from the run owner's state machine. A worker consumes
``invocations`` (a consumer group: add processes to scale, which is also how CPU-bound handlers
get more cores), runs up to ``PIPELINE_WORKER_CONCURRENCY`` of them at once - sync handlers on a
thread pool, async handlers as tasks on one long-lived event loop, so module-level async clients
work across invocations - and produces each outcome to the owner's partition of ``run-commands``.

It is not the transactional :class:`pipeline.kafka.loop.ServiceLoop`: invocations finish out of
order, so offsets are committed up to the oldest one still running (as parallel consumers do),
after its outcome is acknowledged by the broker. A worker that dies loses nothing: what it had
not finished is delivered again, and the step runs again (at least once per step, as in Inngest);
the owner ignores any duplicate outcome. Invocations are read uncommitted (taken as soon as the owner
wrote them): a dispatch whose owner transaction aborts is redone and may run twice, within the same
at-least-once. The consumer keeps polling while handlers run - when full it pauses its partitions
instead of blocking - so a ten-minute step never triggers a rebalance nor holds up another run.

Every invocation taken gets an outcome, whatever its handler raises (``SystemExit``, ``KeyboardInterrupt``,
``CancelledError`` included: a failed attempt, see :func:`pipeline.workers.invoke.failed`), or its offset would
hold back the partition's commits for good. The one exception is the worker's own stop: async handlers still
running after the drain wait are cancelled and send nothing, so they run again elsewhere.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import signal
import socket
import threading
import time
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from ..apps.applied import AppliedCheck, describe_lag
from ..apps.store import publish, sync_producer
from ..config import Settings
from ..kafka import metrics
from ..kafka import topics as t
from ..kafka.client import bootstrap, consumer_config, producer_config
from ..kafka.deadletter import dead_letter_headers
from ..kafka.messages import NotAConsumedRecord, offset_of, partition_of
from ..kafka.watchdog import Heart
from ..protocol.errors import error_json, error_payload
from ..protocol.ids import consumer_group
from ..protocol.invocations import outcome
from ..protocol.records import FunctionDef, StepOutcome
from ..sdk.app import Registry
from ..sdk.function import Function
from ..sdk.synced import SyncedFunction, synced_function
from ..serde import INVOCATION, STEP_OUTCOME, Serde
from .http.call import HttpInvoker
from .invoke import failed, run_async, run_sync
from .offsets import InflightOffsets
from .runtime import HandlerRuntime

log = logging.getLogger("pipeline.worker")

COMMIT_INTERVAL = 0.1
REVOKE_WAIT_SECONDS = 30.0
PAUSE_AFTER_S = 5.0  # saturated longer than this: pause fetching (see Worker._hold)


class WorkerFailed(RuntimeError):
    """An outcome could not be delivered: the worker stops (non-zero) and its invocations run again elsewhere."""


class Worker:
    """One worker process's consumer, producer, thread pool and event loop."""

    name = "worker"

    def __init__(self, registry: Registry, settings: Settings | None = None, *, concurrency: int | None = None,
                 group_id: str | None = None) -> None:
        self.registry = registry
        self.settings = settings or Settings()
        self.serde = Serde()
        self.concurrency = concurrency or self.settings.worker_concurrency
        self.servers = bootstrap(self.settings)
        self.topic = self.settings.topic(t.INVOCATIONS)
        self.commands_topic = self.settings.topic(t.RUN_COMMANDS)
        self.dead_letter_topic = self.settings.topic(t.DEAD_LETTER)
        self.group_id = group_id or consumer_group(self.settings.topic_prefix, "worker")
        self.ident = f"{socket.gethostname()}:{os.getpid()}"
        # read_uncommitted: an invocation is taken as soon as the owner's transaction wrote it, not after its
        # commit (which takes 10-60 ms on a loaded broker, on every step). Safe because steps are at-least-once:
        # if that transaction aborts, the owner redoes it from its committed state and dispatches the same
        # (run, seq, attempt) again, and the step may run twice (never skip the redo: the first outcome may
        # have reached the owner before the redo and been ignored as stale). The owner applies whichever
        # outcome is current, once. The watermark gate is not weakened: the dispatch passed it in the aborted
        # transaction too.
        self.consumer = Consumer(consumer_config(
            self.servers, self.group_id, read_committed=False,
            instance_id=self.settings.instance_id if self.settings.static_membership else None))
        no_linger: dict[str, Any] = {"linger.ms": 0}  # an owner waits for each outcome
        self.producer = Producer(producer_config(self.servers, **no_linger))
        self.offsets = InflightOffsets()
        self.fn_logger = logging.getLogger("pipeline.function")
        self.handlers = HandlerRuntime(self.concurrency)
        self.http = HttpInvoker(self.settings.signing_key, self._learn_wait)  # functions synced over HTTP
        self._sync_producer: Producer | None = None
        self._applied: AppliedCheck | None = None  # proves learned wait names are in every matcher
        self._stop = threading.Event()
        self._closed = threading.Event()  # the drain is over: the producer's poller may end once it is empty
        self._failure: str | None = None
        self._paused = False
        self._assigned: set[int] = set()
        self._backlog: collections.deque[tuple[Message, Any, Any]] = collections.deque()
        self._full_since: float | None = None
        self._slot_freed = threading.Event()
        self._running = 0  # handlers running now: the concurrency limit counts these (see _handler_done)
        self._running_lock = threading.Lock()
        self._rebalanced = False
        self._last_commit = time.monotonic()
        self.completed = 0
        self.heart = Heart(self.name)  # the loop's progress, for the process watchdog (slow handlers do not stop it)

    # -- lifecycle -----------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop taking invocations; the ones running finish and are committed (SIGTERM does this)."""
        self._stop.set()

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop())

    def run(self) -> None:
        """Consume and run invocations until :meth:`stop`; raises :class:`WorkerFailed` if outcomes cannot be sent."""
        metrics.serve(self.settings.metrics_port)
        poller = threading.Thread(target=self._serve_producer, name="worker-producer", daemon=True)
        poller.start()
        self.consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                                on_lost=self._on_revoke)
        log.info("worker started", extra={"group": self.group_id, "concurrency": self.concurrency,
                                          "worker": self.ident})
        self.heart.attach()
        try:
            while not self._stop.is_set():
                self.heart.beat()
                if self._failure is not None:
                    raise WorkerFailed(self._failure)
                free = self.concurrency - self._running
                while free > 0 and self._backlog:  # invocations fetched earlier, oldest first
                    self._take(*self._backlog.popleft())
                    free -= 1
                room = self.concurrency - len(self._backlog)  # fetched but not started: at most one round more
                if room <= 0 and not self._hold(free):
                    continue  # saturated for a moment: let the records wait in librdkafka's queue
                self._flow(room)
                # The first record with a wait, then only what is already fetched: consume(n, timeout) would
                # hold every invocation until n arrived or the timeout ran out.
                msgs = self.consumer.consume(1, timeout=0.05 if free > 0 or not self._backlog else 0.005)
                if msgs and room > 1:
                    msgs += self.consumer.consume(room - 1, timeout=0)
                batch = [(msg, self._decode(msg)) for msg in msgs]
                latest = _latest_seq(batch) if len(batch) > 1 else None
                for msg, inv in batch:
                    if free > 0:
                        self._take(msg, inv, latest)
                        free -= inv is not None
                    else:
                        self._backlog.append((msg, inv, latest))
                if time.monotonic() - self._last_commit >= COMMIT_INTERVAL:
                    self._commit(asynchronous=True)
        finally:
            self._drain()

    def _hold(self, free: int) -> bool:
        """With a full backlog: False (skip this round's fetch) for the first PAUSE_AFTER_S seconds; after that
        True, and the loop pauses the partitions and goes on polling, so a long saturation (10-minute steps)
        keeps the group membership (max.poll.interval) without fetching."""
        now = time.monotonic()
        if self._full_since is None:
            self._full_since = now
        if now - self._full_since >= PAUSE_AFTER_S:
            return True
        self._slot_freed.wait(0.005)
        self._slot_freed.clear()
        return False

    def _flow(self, free: int) -> None:
        """Pause fetching while every slot is busy and a whole round waits fetched (the consumer keeps polling,
        so the group keeps us through a long step). Pausing sooner cost ~0.7 s per round: librdkafka drops a
        paused partition's fetched records and re-fetches them after the resume, so a worker that paused at
        every full round took 200 invocations a second instead of 1,000."""
        assignment = [TopicPartition(self.topic, p) for p in self._assigned]
        if free > 0:
            self._full_since = None
        if free <= 0 and not self._paused and assignment:
            self.consumer.pause(assignment)
            self._paused = True
        elif free > 0 and self._paused:
            if assignment:
                self.consumer.resume(assignment)
            self._paused = False

    def _drain(self) -> None:
        deadline = time.monotonic() + REVOKE_WAIT_SECONDS
        while self.offsets.count() and time.monotonic() < deadline and self._failure is None:
            time.sleep(0.05)
        try:
            self._commit(asynchronous=False)
        except KafkaException as exc:
            log.warning("final commit failed", extra={"error": str(exc)})
        self.producer.flush(10)
        self._sync_producer = None  # the learned-waits producer (its records were acknowledged when sent)
        self._closed.set()
        self.consumer.close()
        self._stop.set()  # set before the shutdown: _run_async takes the cancels that follow for the stop they are
        self.handlers.shutdown()
        log.info("worker stopped", extra={"completed": self.completed, "worker": self.ident})

    # -- one invocation ------------------------------------------------------------------------------------

    def _decode(self, msg: Message) -> dict[str, Any] | Exception | None:
        """The invocation, the reason it cannot be read, or None for a consumer event."""
        err = msg.error()
        if err is not None:
            if err.fatal() or err.code() == KafkaError._FATAL:  # fenced by a twin: this consumer cannot go on
                raise WorkerFailed(str(err))
            if err.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error", extra={"error": str(err)})
            return None
        value = msg.value()
        if value is None:
            return ValueError("an invocation record without a value")
        try:
            return self.serde.decode_as(INVOCATION, value)
        except Exception as exc:  # noqa: BLE001 - whatever makes it unreadable, the record is dead-lettered
            return exc

    def _take(self, msg: Message, inv: dict[str, Any] | Exception | None,
              latest: dict[bytes, int] | None = None) -> None:
        if inv is None:
            return
        p, offset = _position(msg)
        self.offsets.begin(p, offset)
        if isinstance(inv, Exception):  # a poison record: dead-letter it, never stop
            headers: list[tuple[str, str | bytes | None]] = list(dead_letter_headers(self.name, msg, inv))
            self.producer.produce(self.dead_letter_topic, value=msg.value(), key=msg.key(), headers=headers,
                                  on_delivery=self._delivered(p, offset))
            return
        if latest is not None and latest.get(msg.key() or b"", -1) > inv["seq"]:
            # Redelivered after a crash, and already superseded: the owner dispatched a later invocation of
            # this run, so this one's outcome was applied. Running it again would repeat a completed step.
            metrics.INVOCATIONS.labels("superseded").inc()
            self.offsets.done(p, offset)
            return
        fn = self.registry.by_id.get(inv["function_id"])
        if fn is None:
            error = error_json(error_payload(f"function {inv['function_id']} is not served by this worker",
                                             "UnknownFunction"))
            self._send(inv, outcome(inv, "error", _now_ms(), _now_ms(), self.ident, error=error), p, offset)
            return
        with self._running_lock:
            self._running += 1
        metrics.INFLIGHT.set(self._running)
        if isinstance(fn, SyncedFunction):
            self.handlers.run_async(self._run_async(fn, inv, p, offset, http=True))
        elif fn.is_async:
            self.handlers.run_async(self._run_async(fn, inv, p, offset))
        else:
            self.handlers.run_sync(self._run_sync, fn, inv, p, offset)

    def _run_sync(self, fn: Function, inv: dict[str, Any], p: int, offset: int) -> None:
        started = _now_ms()
        try:
            result = run_sync(fn, inv, self.fn_logger, self.ident)
        except BaseException as exc:  # noqa: BLE001 - run_sync reports the handler's own errors; this is the rest
            result = self._escaped(inv, exc, started)
        self._handler_done()
        self._send(inv, result, p, offset)

    async def _run_async(self, fn: Function, inv: dict[str, Any], p: int, offset: int, http: bool = False) -> None:
        started = _now_ms()
        try:
            if http and isinstance(fn, SyncedFunction):  # the app's SDK runs it; same guarantees as a handler
                result = await self.http.run(fn, inv, self.ident)
            else:
                result = await run_async(fn, inv, self.fn_logger, self.ident)
        except asyncio.CancelledError as exc:
            if self._stop.is_set():
                raise  # the worker is stopping (HandlerRuntime.shutdown): no outcome; it runs again elsewhere
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # user code cancelled its own task: that is its failure, not the worker's
            result = self._escaped(inv, exc, started)
        except BaseException as exc:  # noqa: BLE001 - anything else that escaped run_async is a failed attempt
            result = self._escaped(inv, exc, started)
        finally:
            self._handler_done()
        self._send(inv, result, p, offset)

    def _escaped(self, inv: dict[str, Any], exc: BaseException, started: int) -> StepOutcome:
        """A failed attempt for an exception that escaped run_sync/run_async (a cancel of the handler's own
        task, an invocation it could not even start): the run goes on by its retries, the worker goes on."""
        log.warning("invocation failed outside its handler: %s: %s", type(exc).__name__, exc, exc_info=exc,
                    extra={"run_id": inv.get("run_id"), "function_id": inv.get("function_id")})
        return failed(inv, exc, started, self.ident)

    def _learn_wait(self, record: FunctionDef | None) -> str | None:
        """Store a synced function's record with a newly awaited event name (see :mod:`.http.call`), acknowledged
        before the wait's outcome is sent (this worker's registry takes it at once), then wait for every matcher
        to prove it applied it (or, for None, the topic's end): None once proven, else which matchers lag."""
        if self._applied is None:
            self._applied = AppliedCheck(self.settings, "learned-wait")
        if record is None:
            target = self._applied.end_offset()
        else:
            if self._sync_producer is None:
                self._sync_producer = sync_producer(self.settings)
            target = publish(self._sync_producer, self.settings.topic(t.FUNCTIONS), [record], serde=self.serde)
            self.registry.put([synced_function(record)])
        behind = self._applied.wait(target)
        return describe_lag(behind, target) if behind else None

    def _handler_done(self) -> None:
        """A handler returned: its slot is free at once. Waiting for the outcome's acknowledgement as well
        (a broker round trip) made every slot idle for that long per step; outcomes not yet acknowledged are
        bounded by the producer's queue, and their offsets still wait for the acknowledgement."""
        with self._running_lock:
            self._running -= 1
        self._slot_freed.set()

    def _send(self, inv: dict[str, Any], result: StepOutcome, p: int, offset: int) -> None:
        """Produce the outcome to the owner's partition (thread-safe); the offset is done once it is acknowledged."""
        metrics.INVOCATIONS.labels(result["kind"]).inc()
        metrics.INVOCATION_SECONDS.observe(max(0, result["finished_at"] - result["started_at"]) / 1000)
        value = self.serde.encode(STEP_OUTCOME, result)
        while True:
            try:
                self.producer.produce(self.commands_topic, key=inv["run_id"], value=value,
                                      partition=inv["owner_partition"], on_delivery=self._delivered(p, offset))
                return
            except BufferError:
                time.sleep(0.01)

    def _delivered(self, p: int, offset: int) -> Any:
        def report(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                self._failure = f"outcome not delivered: {err}"
                log.error("outcome not delivered; stopping so the invocation runs again", extra={"error": str(err)})
                return
            self.offsets.done(p, offset)
            self.completed += 1

        return report

    # -- machinery -----------------------------------------------------------------------------------------

    def _serve_producer(self) -> None:
        """Serve delivery reports until the drain is over: a stop waits for the handlers still running, and
        their outcomes' acknowledgements are what mark their offsets done (ending at the stop itself left them
        unacknowledged, so the drain waited its whole 30 s and their steps ran again after a restart)."""
        while not self._closed.is_set() or len(self.producer):
            self.producer.poll(0.05)

    def _commit(self, *, asynchronous: bool) -> None:
        self._last_commit = time.monotonic()
        todo = {p: o for p, o in self.offsets.committable().items() if p in self._assigned}
        if not todo:
            return
        offsets = [TopicPartition(self.topic, p, o) for p, o in todo.items()]
        if asynchronous:
            self.consumer.commit(offsets=offsets, asynchronous=True)
        else:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        with self.offsets.lock:
            self.offsets.committed.update(todo)

    @property
    def ready(self) -> bool:
        """Joined its group (``/readyz``); a worker has no state to restore."""
        return self._rebalanced and not self._stop.is_set()

    @property
    def assignment(self) -> list[int]:
        return sorted(self._assigned)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._rebalanced = True
        self._assigned |= {tp.partition for tp in partitions}
        self._paused = False
        log.info("partitions assigned", extra={"service": self.name, "partitions": sorted(self._assigned)})

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Let the invocations of revoked partitions finish (bounded) and commit them, so a rebalance does not
        make another worker run them a second time."""
        gone = {tp.partition for tp in partitions}
        # fetched but not started: the partition's next owner fetches them again (nothing was committed past them)
        self._backlog = collections.deque(e for e in self._backlog if e[0].partition() not in gone)
        deadline = time.monotonic() + REVOKE_WAIT_SECONDS
        while self.offsets.count(gone) and time.monotonic() < deadline and self._failure is None:
            time.sleep(0.02)
        try:
            self._commit(asynchronous=False)
        except KafkaException as exc:
            log.warning("commit on revoke failed", extra={"error": str(exc)})
        self._assigned -= gone
        self.offsets.forget(gone)
        log.info("partitions revoked", extra={"service": self.name, "partitions": sorted(gone)})


def _latest_seq(batch: list[tuple[Message, Any]]) -> dict[bytes, int]:
    """The highest invocation seq per run (record key) in a batch of decoded invocations."""
    latest: dict[bytes, int] = {}
    for msg, inv in batch:
        key = msg.key()
        if isinstance(inv, dict) and key is not None and inv["seq"] > latest.get(key, -1):
            latest[key] = inv["seq"]
    return latest


def _position(msg: Message) -> tuple[int, int]:
    """A fetched record's partition and offset (set on every record the consumer returns, unlike events)."""
    try:
        return partition_of(msg), offset_of(msg)
    except NotAConsumedRecord as exc:
        raise WorkerFailed(f"a fetched record without a position ({exc}): {msg.error()}") from None


def _now_ms() -> int:
    return time.time_ns() // 1_000_000

