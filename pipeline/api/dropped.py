"""``/v1/functions/{id}/dropped``: the events a function's rate limit or idempotency dropped, newest first.

The run owner writes one ``DroppedEvent`` per drop to ``dropped-events`` (delete retention, 7 days) in the
transaction that dropped it. The API tails that topic from the retention's start, or the last 50,000 records of a
partition if there are more (:class:`DroppedEvents`), and keeps the newest ``keep`` per function in memory:
bounded whatever the traffic, and refilled from the topic when the API restarts.
``pipeline_flow_dropped_events_total{function,reason}`` counts them without a bound.
"""

from __future__ import annotations

import collections
import threading
from typing import Any, cast

from confluent_kafka import Message
from fastapi import Request

from ..protocol.drops import dropped_dict
from ..protocol.records import DroppedEvent
from ..serde import DROPPED_EVENT, Serde, SerdeError
from .auth import signed_router
from .edge import answers
from .tail import TopicTail

KEEP_PER_FUNCTION = 200
LOOKBACK_MS = 7 * 24 * 3600 * 1000  # the topic's retention
MAX_BACK = 50_000  # records read back per partition at start: a restart costs seconds, whatever was dropped

router = signed_router()


class DroppedEvents(TopicTail):
    """The newest ``keep`` dropped events of each function, from the ``dropped-events`` topic."""

    def __init__(self, servers: str, topic: str, *, keep: int = KEEP_PER_FUNCTION,
                 lookback_ms: int = LOOKBACK_MS, max_back: int = MAX_BACK) -> None:
        super().__init__(servers, [topic], lookback_ms=lookback_ms, name="api-dropped-events", max_back=max_back)
        self.keep = keep
        self.serde = Serde()
        self.counts: dict[str, int] = {}  # per function, every drop seen since the look-back time
        self._by_function: dict[str, collections.deque[DroppedEvent]] = {}
        self._lock = threading.Lock()

    def latest(self, function_id: str, limit: int) -> list[dict[str, Any]]:
        with self._lock:
            kept = list(self._by_function.get(function_id, ()))
        kept.reverse()  # newest read first, then by receive time (a function's drops share a partition anyway)
        kept.sort(key=lambda d: d["received_at"], reverse=True)
        return [dropped_dict(d) for d in kept[:limit]]

    def _take(self, msgs: list[Message]) -> None:
        records: list[DroppedEvent] = []
        for msg in msgs:
            value = msg.value()
            if value is None:
                continue
            try:
                record = cast(DroppedEvent, self.serde.decode_as(DROPPED_EVENT, value))
            except SerdeError:
                continue
            records.append(record)
        with self._lock:
            for record in records:
                fn = record["function_id"]
                ring = self._by_function.get(fn)
                if ring is None:
                    ring = self._by_function[fn] = collections.deque(maxlen=self.keep)
                ring.append(record)
                self.counts[fn] = self.counts.get(fn, 0) + 1


@router.get("/v1/functions/{function_id}/dropped", responses=answers(401))
async def dropped_events(function_id: str, request: Request, limit: int = 50) -> dict[str, Any]:
    """The events the function's rate limit or idempotency dropped (newest first, at most the last 200 kept),
    each with the reason, the key's value and the run id it would have started; ``total``: every drop the API has
    read since it started (from the topic's retention)."""
    dropped: DroppedEvents = request.app.state.dropped
    return {"data": dropped.latest(function_id, max(1, min(limit, KEEP_PER_FUNCTION))),
            "total": dropped.counts.get(function_id, 0)}
