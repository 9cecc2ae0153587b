"""``/v1/sources``: the app's sources (its own topics mapped to events) and how far behind each one is.

A source runs as the ``source`` service (group ``pipeline-source``); its lag is the records of its topic that
the group has not committed yet, read from the broker when asked (the dev UI's Sources page). Needs the signing
key (the router's dependency).
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, TopicPartition
from fastapi import Request
from starlette.concurrency import run_in_threadpool

from ..kafka.client import bootstrap, consumer_config
from ..protocol.ids import consumer_group
from .auth import signed_router
from .context import api_config
from .edge import answers

router = signed_router()
SOURCE_SERVICE = "source"


def lag_of(committed: int, low: int, high: int) -> int:
    """Records not yet copied in a partition: from the committed offset (none yet: the log's start) to its end."""
    start = committed if committed >= 0 else low
    return max(0, high - max(start, low))


def topic_lags(servers: str, group: str, topics: list[str]) -> dict[str, int | None]:
    """Each topic's lag for ``group`` (None: the topic cannot be read: missing, or the broker did not answer)."""
    consumer = Consumer(consumer_config(servers, group))
    try:
        out: dict[str, int | None] = {}
        for topic in topics:
            try:
                meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
                if meta is None or meta.error is not None:
                    out[topic] = None
                    continue
                tps = [TopicPartition(topic, p) for p in sorted(meta.partitions)]
                committed = consumer.committed(tps, timeout=10)
                total = 0
                for tp in committed:
                    low, high = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=10)
                    total += lag_of(tp.offset, low, high)
                out[topic] = total
            except Exception:  # noqa: BLE001 - a lag we cannot read is shown as unknown, never a 500
                out[topic] = None
        return out
    finally:
        consumer.close()


@router.get("/v1/sources", responses=answers(401))
async def list_sources(request: Request) -> dict[str, Any]:
    """The served app's sources (with ``pipeline dev``), each with its topic's lag (records not yet copied)."""
    config = api_config(request)
    sources = config.registry.sources if config.registry is not None else []
    group = consumer_group(config.settings.topic_prefix, SOURCE_SERVICE)
    lags = await run_in_threadpool(topic_lags, bootstrap(config.settings), group,
                                   sorted({s.topic for s in sources})) if sources else {}
    return {"data": [{"id": s.source_id, "topic": s.topic, "name": s.name, "data": s.data, "event_id": s.id,
                      "if": s.if_exp, "value_format": s.value_format, "lag": lags.get(s.topic)}
                     for s in sources]}
