"""Kafka writes for request handlers: a 200 from the API means the broker has acknowledged the records."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from functools import partial
from typing import NamedTuple

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from .edge import ApiError


class Outgoing(NamedTuple):
    """One record to produce. ``partition`` -1 lets the partitioner choose by key; commands for a run name the
    run owner's partition explicitly, because that is where the owner reads them."""

    topic: str
    key: str
    value: bytes
    partition: int = -1


class Writer:
    """Produces records and awaits their delivery reports, so a 200 means "acknowledged by the broker".

    One producer serves every request. A background thread serves the producer's callbacks
    (``poll``) and counts each request's delivery reports down; the last one wakes the request's
    event loop. A request waits only for its own records (no global flush) and holds no worker
    thread while it waits, even when the broker is slow or away.
    """

    def __init__(self, producer: Producer, timeout: float = 30.0) -> None:
        self.producer = producer
        self.timeout = timeout
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._poll, name="api-producer-poll", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(0.1)

    async def send(self, records: Sequence[Outgoing], *, positions: bool = True) -> list[tuple[int, int]]:
        """Produce the records; returns their (partition, offset) in order, or raises ApiError 503.

        The request waits on one future for the whole batch: the delivery reports fill in the positions on the
        poll thread, and only the last one (or the first failure) wakes the event loop, once per request rather
        than once per record. ``positions=False`` (events in: no one reads where they landed) only counts the
        reports down, with one callback for every record instead of one made per record, and returns []."""
        if not records:
            return []
        batch = _Batch(asyncio.get_running_loop(), len(records))
        produce = self.producer.produce
        report = batch.report
        ack = batch.ack
        try:
            if positions:
                for i, record in enumerate(records):
                    produce(record.topic, key=record.key.encode(), value=record.value, partition=record.partition,
                            on_delivery=partial(report, i))
            else:
                for record in records:
                    produce(record.topic, key=record.key.encode(), value=record.value, partition=record.partition,
                            on_delivery=ack)
        except (BufferError, KafkaException) as exc:
            batch.abandon()
            raise ApiError(503, f"cannot queue records for Kafka: {exc}") from exc
        try:
            await asyncio.wait_for(batch.future, self.timeout)
        except TimeoutError:
            raise ApiError(503, "Kafka did not acknowledge the write in time") from None
        return batch.positions if positions else []


class _Batch:
    """The delivery reports of one request's records, counted down on the producer's poll thread."""

    __slots__ = ("_left", "_lock", "future", "loop", "positions")

    def __init__(self, loop: asyncio.AbstractEventLoop, n: int) -> None:
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()
        self.positions: list[tuple[int, int]] = [(-1, -1)] * n  # every slot is filled once the future is done
        self._left = n
        self._lock = threading.Lock()  # reports come from whichever thread polls (the writer's, or a flush)

    def report(self, i: int, err: KafkaError | None, msg: Message) -> None:  # runs on the poll thread
        """Record ``i``'s report: its position kept, then counted down."""
        if err is None:
            partition, offset = msg.partition(), msg.offset()
            if partition is None or offset is None:  # a delivered record always has both
                self._finish(ApiError(503, "Kafka acknowledged the write without its position"))
                return
            self.positions[i] = (partition, offset)
        self.ack(err, msg)

    def ack(self, err: KafkaError | None, msg: Message) -> None:  # runs on the poll thread
        """One record's report counted down (the one callback of every record when no positions are kept)."""
        if err is not None:
            self._finish(ApiError(503, f"Kafka refused the write: {err}"))
            return
        with self._lock:
            self._left -= 1
            last = self._left == 0
        if last:
            self._finish(None)

    def _finish(self, outcome: ApiError | None) -> None:
        with self._lock:
            if self._left < 0:  # settled already (a failure came first)
                return
            self._left = -1
        try:
            self.loop.call_soon_threadsafe(self._settle, outcome)
        except RuntimeError:  # the request's loop is closed (shutdown): no one is waiting any more
            pass

    def _settle(self, outcome: ApiError | None) -> None:  # on the event loop
        if self.future.done():  # timed out and cancelled meanwhile
            return
        if outcome is None:
            self.future.set_result(None)
        else:
            self.future.set_exception(outcome)

    def abandon(self) -> None:
        """No one will wait: the reports of records already queued settle nothing."""
        with self._lock:
            self._left = -1
        self.future.cancel()
