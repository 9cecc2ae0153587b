"""``/v1/events``: the recent event stream (for the dev UI) and the runs one event started.

Events themselves are not stored by the API: the stream is a bounded ring of the newest events and system
events (:class:`~pipeline.api.recent_events.RecentEvents`), and the runs of an event come from the runs
table. Every route needs the signing key (the router's dependency).
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from ..serde.models import RunView
from .auth import signed_router
from .context import ensure_ready, recent_ring
from .edge import answers

router = signed_router()


@router.get("/v1/events", responses=answers(401))
async def recent_events(request: Request, limit: int = 100) -> dict[str, Any]:
    """The newest events and system events, each with the runs it started."""
    runs, _ = await ensure_ready(request)
    events = recent_ring(request).latest(max(1, min(limit, 500)))
    for ev in events:
        ev["runs"] = [{"run_id": s["run_id"], "function_id": s["function_id"], "status": s["status"]}
                      for s in runs.for_event(ev["id"])]
    return {"data": events}


@router.get("/v1/events/{event_id}/runs", responses=answers(401, 503))
async def event_runs(event_id: str, request: Request) -> dict[str, Any]:
    """The runs an event started (empty while the matcher has not scheduled them yet)."""
    runs, _ = await ensure_ready(request)
    return {"data": [RunView.from_state(s).model_dump() for s in runs.for_event(event_id)]}
