"""``/v1/pending``: the pending debounces and batches (issue 21), read from the run owners' ``debounces`` and
``batches`` changelogs, and their cancel.

A pending debounce or batch is not a run yet (no state in ``runs``), so the API reads the two compacted topics
whole on each request (they hold one record per function key that is waiting: small) and folds them, last record
per key. Cancelling one sends a cancel command for the run id it would start to the owner partition holding it;
the owner drops the record (``DELETE /v1/runs/{id}`` does this too when the id is a pending one).
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import Message
from fastapi import Request
from starlette.concurrency import run_in_threadpool

from ..kafka import topics as t
from ..kafka.client import bootstrap
from ..kafka.restore import restore
from ..protocol.commands import cancel_command
from ..protocol.pending import PendingRecord, decode_pending
from ..serde import RUN_COMMAND
from ..serde.models import now_ms
from .auth import signed_router
from .context import api_config, partition_counts, write
from .edge import ApiError, answers
from .writer import Outgoing

router = signed_router()


def _read_pending(servers: str, topics: list[str], partitions: int) -> list[tuple[int, PendingRecord]]:
    """Every pending record now, with its partition (the topics' last record per key; tombstones remove)."""
    latest: dict[tuple[str, bytes], tuple[int, PendingRecord] | None] = {}
    for topic in topics:
        def take(msg: Message, topic: str = topic) -> None:
            key, value, p = msg.key(), msg.value(), msg.partition()
            if key is None or p is None:
                return
            latest[(topic, bytes(key))] = None if value is None else (p, decode_pending(value))

        restore(servers, topic, range(partitions), take, label=f"api {topic}")
    return [entry for entry in latest.values() if entry is not None]


def pending_view(p: int, record: PendingRecord) -> dict[str, Any]:
    import json

    events = [json.loads(c["event"]) for c in record["commands"]]
    return {"kind": record["kind"], "function_id": record["function_id"], "key": record["key"] or None,
            "run_id": record["run_id"], "partition": p, "events": [e.get("id") for e in events],
            "event": events[0] if record["kind"] == "debounce" else None, "size": len(events),
            "first_received_at": record["first_received_at"], "last_received_at": record["last_received_at"],
            "deadline_at": record["deadline_at"], "later": len(record["later"])}


async def pending_records(request: Request) -> list[tuple[int, PendingRecord]]:
    config = api_config(request)
    settings = config.settings
    topics = [settings.topic(t.DEBOUNCES), settings.topic(t.BATCHES)]
    return await run_in_threadpool(_read_pending, bootstrap(settings), topics, partition_counts(request)[0])


@router.get("/v1/pending", responses=answers(401, 503))
async def list_pending(request: Request, function: str | None = None) -> dict[str, Any]:
    """Pending debounces and batches (of ``function``, if given), the soonest deadline first."""
    found = [pending_view(p, r) for p, r in await pending_records(request)
             if function is None or r["function_id"] == function]
    return {"data": sorted(found, key=lambda v: (v["deadline_at"], v["function_id"]))}


async def cancel_pending(request: Request, run_id: str) -> dict[str, Any] | None:
    """Send the cancel of the pending debounce or batch that would start ``run_id``; None if there is none."""
    for p, record in await pending_records(request):
        if record["run_id"] == run_id:
            config = api_config(request)
            command = cancel_command(run_id, record["function_id"], "rest", None, now_ms())
            await write(request, [Outgoing(config.commands_topic, run_id, config.serde.encode(RUN_COMMAND, command),
                                           p)])
            return {"run_id": run_id, "status": "Cancelling", "pending": record["kind"]}
    return None


@router.delete("/v1/pending/{run_id}", responses=answers(401, 404, 503))
async def delete_pending(run_id: str, request: Request) -> dict[str, Any]:
    """Cancel a pending debounce or batch by the run id it would start (see ``GET /v1/pending``)."""
    done = await cancel_pending(request, run_id)
    if done is None:
        raise ApiError(404, f"no pending debounce or batch would start run {run_id}")
    return {"data": done}
