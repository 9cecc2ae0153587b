"""``GET /healthz``: whether this instance is worth routing to.

Open (no key), so a load balancer can probe it; it answers 503 until both tables have caught up with Kafka,
because before that every read would be a 503 or, worse, a stale answer. ``/metrics`` is mounted by
:func:`pipeline.api.metrics.mount_metrics`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from .context import tables

router = APIRouter()


@router.get("/healthz", responses={503: {"description": "tables still loading from Kafka"}})
async def healthz(request: Request) -> JSONResponse:
    """200 once both tables have caught up with Kafka, so a load balancer only routes to a useful instance."""
    runs, cancellations = tables(request)
    report: dict[str, Any] = {"tables": {
        table.name: {"ready": table.ready.is_set(), "records": table.records_read,
                     "restore_seconds": table.restore_seconds, "error": table.error}
        for table in (runs, cancellations)}}
    if runs.ready.is_set() and cancellations.ready.is_set():
        return JSONResponse({"status": "ok", **report})
    return JSONResponse({"status": "starting", **report}, status_code=503)
