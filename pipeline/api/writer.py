"""Kafka writes for request handlers: a 200 from the API means the broker has acknowledged the records."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
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
    (``poll``) and hands each delivery report to the waiting request's event loop, so a request
    waits only for its own records (no global flush) and holds no worker thread while it waits,
    even when the broker is slow or away.
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

    async def send(self, records: Sequence[Outgoing]) -> list[tuple[int, int]]:
        """Produce the records; returns their (partition, offset) in order, or raises ApiError 503."""
        if not records:
            return []
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[tuple[int, int]]] = [loop.create_future() for _ in records]

        def report(fut: asyncio.Future[tuple[int, int]]) -> Callable[[KafkaError | None, Message], None]:
            def settle(outcome: tuple[int, int] | ApiError) -> None:
                if fut.done():
                    return
                if isinstance(outcome, ApiError):
                    fut.set_exception(outcome)
                else:
                    fut.set_result(outcome)

            def on_delivery(err: KafkaError | None, msg: Message) -> None:  # runs on the poll thread
                partition, offset = msg.partition(), msg.offset()
                outcome: tuple[int, int] | ApiError
                if err is not None:
                    outcome = ApiError(503, f"Kafka refused the write: {err}")
                elif partition is None or offset is None:  # a delivered record always has both
                    outcome = ApiError(503, "Kafka acknowledged the write without its position")
                else:
                    outcome = (partition, offset)
                loop.call_soon_threadsafe(settle, outcome)
            return on_delivery

        try:
            for fut, record in zip(futures, records, strict=True):
                self.producer.produce(record.topic, key=record.key.encode(), value=record.value,
                                      partition=record.partition, on_delivery=report(fut))
        except (BufferError, KafkaException) as exc:
            raise ApiError(503, f"cannot queue records for Kafka: {exc}") from exc
        try:
            return list(await asyncio.wait_for(asyncio.gather(*futures), self.timeout))
        except TimeoutError:
            raise ApiError(503, "Kafka did not acknowledge the write in time") from None
