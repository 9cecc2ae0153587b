"""What the dev UI reads and does beyond the Inngest-shaped API: paged runs, functions, the recent event
stream, replaying a run, and the UI itself at ``/`` (static files, no build step).

Reads and actions take the same signing key as the rest of ``/v1`` (``Authorization: Bearer``); the UI asks
for it once and keeps it in the browser's session storage.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from ..kafka import topics as t
from ..serde.models import RunView
from .edge import ApiError, answers

UI_DIR = Path(__file__).resolve().parent / "ui"


def _summary(state: dict[str, Any]) -> dict[str, Any]:
    return {"run_id": state["run_id"], "function_id": state["function_id"], "event_id": state["event_id"],
            "status": state["status"], "queued_at": state["queued_at"], "started_at": state.get("started_at"),
            "ended_at": state.get("ended_at"), "cancel_reason": state.get("cancel_reason"),
            "pending_step": state.get("pending_step"), "replay_of": state.get("replay_of")}


def _cursor(text: str | None) -> tuple[int, str] | None:
    if not text:
        return None
    neg, _, run_id = text.partition(":")
    try:
        return int(neg), run_id
    except ValueError:
        raise ApiError(400, f"bad cursor {text!r}") from None


def add_browse_routes(app: FastAPI, *, settings: Any, registry: Any, ensure_ready: Callable[[Request], Awaitable[Any]],
                      require_signing_key: Callable[[Request], None],
                      write: Callable[[Request, list[tuple[Any, ...]]], Awaitable[Any]], serde: Any) -> None:
    @app.get("/", include_in_schema=False)
    async def ui_index() -> FileResponse:
        return FileResponse(UI_DIR / "index.html")

    app.mount("/ui", StaticFiles(directory=UI_DIR), name="ui")

    @app.get("/v1/runs", responses=answers(400, 401, 503))
    async def list_runs(request: Request, function: str | None = None, status: str | None = None,
                        since: int | None = None, until: int | None = None, cursor: str | None = None,
                        limit: int = 50) -> dict[str, Any]:
        """Runs newest first, filtered by function, status and queue time; ``next`` pages on."""
        require_signing_key(request)
        runs, _ = await ensure_ready(request)
        if not 1 <= limit <= 500:
            raise ApiError(400, "limit must be between 1 and 500")
        page, nxt = runs.page(function or None, status or None, limit=limit, cursor=_cursor(cursor),
                              since_ms=since, until_ms=until)
        return {"data": [_summary(s) for s in page], "next": f"{nxt[0]}:{nxt[1]}" if nxt else None}

    @app.get("/v1/runs/{run_id}/detail", responses=answers(401, 404, 503))
    async def run_detail(run_id: str, request: Request) -> dict[str, Any]:
        """A run with its event and the cleanup runs its cancellation started (``function.cancelled`` has the
        run id as its event id), and the runs that replay it."""
        require_signing_key(request)
        runs, _ = await ensure_ready(request)
        state = runs.get(run_id)
        if state is None:
            raise ApiError(404, f"run {run_id} not found")
        caused = [dict(_summary(s), event=json.loads(s["event"])) for s in runs.for_event(run_id)]
        return {"data": RunView.from_state(state).model_dump(), "caused": caused}

    @app.get("/v1/functions", responses=answers(401, 503))
    async def list_functions(request: Request) -> dict[str, Any]:
        """The served functions (with ``pipeline dev``) and every function that has runs, with counts."""
        require_signing_key(request)
        runs, _ = await ensure_ready(request)
        counts = runs.function_counts()
        out = []
        for fn in (registry.functions if registry is not None else []):
            out.append({"id": fn.id, "app_id": fn.app_id, "fn_id": fn.fn_id, "name": fn.name, "triggers": [tr.event for tr in fn.triggers] +
                        [f"cron {c.expression}" for c in fn.crons],
                        "cancel": [{"event": c.spec.event, "if": c.spec.expression()} for c in fn.cancels],
                        "concurrency": [{"limit": c.limit, "key": c.key.source if c.key else None}
                                        for c in fn.concurrency],
                        "runs": counts.get(fn.id, 0)})
        known = {f["id"] for f in out}
        out += [{"id": fid, "app_id": None, "fn_id": None, "name": fid, "triggers": [], "cancel": [], "concurrency": [],
                 "runs": n}
                for fid, n in sorted(counts.items()) if fid not in known]
        return {"data": out}

    @app.get("/v1/events", responses=answers(401))
    async def recent_events(request: Request, limit: int = 100) -> dict[str, Any]:
        """The newest events and system events, each with the runs it started."""
        require_signing_key(request)
        runs, _ = await ensure_ready(request)
        events = request.app.state.recent.latest(max(1, min(limit, 500)))
        for ev in events:
            ev["runs"] = [{"run_id": s["run_id"], "function_id": s["function_id"], "status": s["status"]}
                          for s in runs.for_event(ev["id"])]
        return {"data": events}

    @app.post("/v1/runs/{run_id}/replay", responses=answers(401, 404, 409, 503))
    async def replay_run(run_id: str, request: Request) -> dict[str, Any]:
        """A new run of the same event, linked to this one (``replay_of``); once per run."""
        from ..ops.runs_replay import replay_id
        from ..protocol.commands import start_records

        require_signing_key(request)
        runs, _ = await ensure_ready(request)
        if registry is None:
            raise ApiError(409, "replay needs the app's functions: run the API with `pipeline dev --app ...` "
                                "or use `pipeline replay runs --app ...`")
        state = runs.get(run_id)
        if state is None:
            raise ApiError(404, f"run {run_id} not found")
        fn = registry.by_id.get(state["function_id"])
        if fn is None:
            raise ApiError(404, f"function {state['function_id']} is not served here")
        new_id = replay_id(state)
        now = int(time.time() * 1000)
        topics = {"commands": settings.topic(t.RUN_COMMANDS), "index": settings.topic(t.CANCEL_INDEX)}
        counts = request.app.state.partition_counts()
        records = [(topics[role], key, serde.encode(schema, value), partition)
                   for role, key, schema, value, partition in start_records(
                       fn, json.loads(state["event"]), state["event"], new_id, now, now, counts[0], counts[1],
                       replay_of=run_id)]
        await write(request, records)
        return {"data": {"run_id": new_id, "replay_of": run_id}}
