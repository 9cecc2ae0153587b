"""``/v1/runs``: one run, cancelling it, and for the dev UI the paged list, a run's detail and replaying it.

Reads come from the runs table (fed by the compacted ``runs`` topic), so they are as fresh as that topic.
The API never changes run state itself: a cancel is a command to ``run-commands`` and a replay is a new
start, both written to Kafka for the run owner, which stays the only writer of run state.
Every route needs the signing key (the router's dependency).
"""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi import Request

from ..kafka import topics as t
from ..protocol.commands import cancel_command
from ..serde import RUN_COMMAND
from ..serde.models import ENDED_STATUSES, RunView, now_ms
from .auth import signed_router
from .context import api_config, ensure_ready, find_run, partition_counts, write
from .edge import ApiError, answers
from .pending import cancel_pending
from .writer import Outgoing

router = signed_router()


def _summary(state: dict[str, Any]) -> dict[str, Any]:
    """A run as a row of the UI's list: no steps or outputs, which may be large."""
    return {"run_id": state["run_id"], "function_id": state["function_id"], "event_id": state["event_id"],
            "status": state["status"], "queued_at": state["queued_at"], "started_at": state.get("started_at"),
            "ended_at": state.get("ended_at"), "cancel_reason": state.get("cancel_reason"),
            "pending_step": state.get("pending_step"), "replay_of": state.get("replay_of")}


def _cursor(text: str | None) -> tuple[int, str] | None:
    """A ``next`` cursor (``-queued_at:run_id``) back into the index entry it names."""
    if not text:
        return None
    neg, _, run_id = text.partition(":")
    try:
        return max(-_MS_BOUND, min(int(neg), _MS_BOUND)), run_id
    except ValueError:
        raise ApiError(400, f"bad cursor {text!r}") from None


_MS_BOUND = 1 << 62  # times beyond it mean nothing; the run index keys times as fixed-width integers


def _clamp(ms: int | None) -> int | None:
    """A time filter (or cursor) far outside any real time is the same filter at the bound, not a 500."""
    return None if ms is None else max(-_MS_BOUND, min(ms, _MS_BOUND))


@router.get("/v1/runs", responses=answers(400, 401, 503))
async def list_runs(request: Request, function: str | None = None, status: str | None = None,
                    since: int | None = None, until: int | None = None, cursor: str | None = None,
                    limit: int = 50) -> dict[str, Any]:
    """Runs newest first, filtered by function, status and queue time; ``next`` pages on."""
    runs, _ = await ensure_ready(request)
    if not 1 <= limit <= 500:
        raise ApiError(400, "limit must be between 1 and 500")
    page, nxt = runs.page(function or None, status or None, limit=limit, cursor=_cursor(cursor),
                          since_ms=_clamp(since), until_ms=_clamp(until))
    return {"data": [_summary(s) for s in page], "next": f"{nxt[0]}:{nxt[1]}" if nxt else None}


@router.get("/v1/runs/{run_id}/detail", responses=answers(401, 404, 503))
async def run_detail(run_id: str, request: Request) -> dict[str, Any]:
    """A run with its event and the cleanup runs its cancellation started (``function.cancelled`` has the
    run id as its event id), and the runs that replay it."""
    runs, _ = await ensure_ready(request)
    state = runs.get(run_id)
    if state is None:
        raise ApiError(404, f"run {run_id} not found")
    caused = [dict(_summary(s), event=json.loads(s["event"])) for s in runs.for_event(run_id)]
    return {"data": RunView.from_state(state).model_dump(), "caused": caused}


@router.post("/v1/runs/{run_id}/replay", responses=answers(401, 404, 409, 503))
async def replay_run(run_id: str, request: Request) -> dict[str, Any]:
    """A new run of the same event, linked to this one (``replay_of``); once per run."""
    from ..ops.runs_replay import replay_id
    from ..protocol.commands import start_records

    config = api_config(request)
    runs, _ = await ensure_ready(request)
    if config.registry is None:
        raise ApiError(409, "replay needs the app's functions: run the API with `pipeline dev --app ...` "
                            "or use `pipeline replay runs --app ...`")
    state = runs.get(run_id)
    if state is None:
        raise ApiError(404, f"run {run_id} not found")
    fn = config.registry.by_id.get(state["function_id"])
    if fn is None:
        raise ApiError(404, f"function {state['function_id']} is not served here")
    new_id = replay_id(state)
    now = int(time.time() * 1000)
    settings = config.settings
    topics = {"commands": settings.topic(t.RUN_COMMANDS), "index": settings.topic(t.CANCEL_INDEX)}
    counts = partition_counts(request)
    records = [Outgoing(topics[role], key, config.serde.encode(schema, value), partition)
               for role, key, schema, value, partition in start_records(
                   fn, json.loads(state["event"]), state["event"], new_id, now, now, counts[0], counts[1],
                   replay_of=run_id)]
    await write(request, records)
    return {"data": {"run_id": new_id, "replay_of": run_id}}


@router.get("/v1/runs/{run_id}", responses=answers(401, 404, 503))
async def get_run(run_id: str, request: Request) -> dict[str, Any]:
    runs, _ = await ensure_ready(request)
    return {"data": RunView.from_state(await find_run(request, runs, run_id)).model_dump()}


@router.delete("/v1/runs/{run_id}", responses=answers(401, 404, 409, 503))
async def cancel_run(run_id: str, request: Request) -> dict[str, Any]:
    """Ask the run's owner to cancel it. Answers once the command is in Kafka, before it is applied."""
    config = api_config(request)
    runs, _ = await ensure_ready(request)
    if runs.get(run_id) is None:  # a pending debounce or batch is cancelled by the run id it would start
        pending = await cancel_pending(request, run_id)
        if pending is not None:
            return {"data": pending}
    state = await find_run(request, runs, run_id)
    if state["status"] in ENDED_STATUSES:
        raise ApiError(409, f"run {run_id} has already ended ({state['status']})")
    command = cancel_command(run_id, state["function_id"], "rest", None, now_ms())
    await write(request, [Outgoing(config.commands_topic, run_id, config.serde.encode(RUN_COMMAND, command),
                                   runs.partitions[run_id])])
    return {"data": {"run_id": run_id, "status": "Cancelling"}}
