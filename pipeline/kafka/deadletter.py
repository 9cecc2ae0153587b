"""Dead letters: where a record that a service cannot handle goes, with why and where it came from.

The loop dead-letters inside its transaction (see ``ServiceLoop._dead_letter``). A state restore reads a
changelog outside any transaction, and a record it cannot decode there (corrupt bytes, a schema version this
build does not know after a rollback) must not crash-loop the service: :class:`DeadLetterSink` sends it to
the dead-letter topic with a plain idempotent producer and the restore goes on without it. Such a record is
dead-lettered again at each restore until its key is compacted away or overwritten; the source coordinates
in its headers tell the copies apart from new ones.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

from confluent_kafka import Message, Producer

from . import metrics
from .client import producer_config

log = logging.getLogger("pipeline.deadletter")

Headers = list[tuple[str, str | bytes | None]]


def dead_letter_headers(service: str, msg: Message, exc: BaseException) -> Headers:
    """Log a record a service gives up on and build the headers that say why and where it came from."""
    reason = f"{type(exc).__name__}: {exc}"[:1000]
    log.warning("dead-lettered record", extra={
        "service": service, "topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset(),
        "reason": reason, "trace": traceback.format_exc(limit=3)})
    headers: Headers = [
        ("dlq.reason", reason.encode()),
        ("dlq.error.class", type(exc).__name__.encode()),
        ("dlq.source.topic", (msg.topic() or "").encode()),
        ("dlq.source.partition", str(msg.partition()).encode()),
        ("dlq.source.offset", str(msg.offset()).encode()),
        ("dlq.service", service.encode()),
    ]
    original = msg.headers()
    if original:
        headers.extend(original.items() if isinstance(original, dict) else original)
    return headers


class DeadLetterSink:
    """Dead-letter records outside a transaction (during restores). Created lazily: most restores need none."""

    def __init__(self, servers: str, topic: str, service: str) -> None:
        self.servers = servers
        self.topic = topic
        self.service = service
        self._producer: Producer | None = None
        self.sent = 0

    def send(self, msg: Message, exc: BaseException) -> None:
        if self._producer is None:
            linger: dict[str, Any] = {"linger.ms": 1}
            self._producer = Producer(producer_config(self.servers, **linger))
        self._producer.produce(self.topic, value=msg.value(), key=msg.key(),
                               headers=dead_letter_headers(self.service, msg, exc))
        self.sent += 1
        metrics.DEAD_LETTERS.labels(self.service, type(exc).__name__).inc()

    def flush(self) -> None:
        """Wait until every dead letter is acknowledged; raise if one is not (the restore must not lose it)."""
        if self._producer is not None and self._producer.flush(30) > 0:
            raise RuntimeError(f"dead letters to {self.topic} not acknowledged")
