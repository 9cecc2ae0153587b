"""``/v1/cancellations``: create, list and stop bulk cancellations.

A bulk cancellation is a record on the compacted ``cancellations`` topic that every run owner reads whole
and applies to its own runs; the API only writes and lists the records. After a write it waits until its
own table has read the record back, so a ``GET`` straight afterwards sees it. The rules that decide a 400
are in :mod:`pipeline.api.bulk`; every route needs the signing key (the router's dependency).
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from pydantic import ValidationError

from ..expr import ExprError
from ..serde import BULK_CANCELLATION
from ..serde.models import now_ms
from .auth import signed_router
from .bodies import json_body
from .bulk import CancellationRequest, cancellation_record, cancellation_view, validate_if, validate_window
from .context import api_config, ensure_ready, poll_until, write
from .edge import ApiError, answers, body
from .errors import field_errors, summary
from .writer import Outgoing

router = signed_router()


@router.post("/v1/cancellations", responses=answers(400, 401, 413, 503),
             openapi_extra=body(CancellationRequest.model_json_schema(by_alias=True)))
async def create_cancellation(request: Request) -> dict[str, Any]:
    """Cancel every active run of a function started within a window (and matching ``if``)."""
    config = api_config(request)
    payload = await json_body(request)
    if not isinstance(payload, dict):
        raise ApiError(400, "the body must be a JSON object")
    try:
        req = CancellationRequest.model_validate(payload)
    except ValidationError as exc:
        errors = field_errors(exc)
        raise ApiError(400, f"invalid cancellation: {summary(errors)}", errors) from None
    now = now_ms()
    try:
        validate_window(req.started_before, req.started_after, now)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    try:
        validate_if(req.if_)
    except ExprError as exc:
        raise ApiError(400, f"invalid if expression: {exc}") from None
    _, cancellations = await ensure_ready(request)
    record = cancellation_record(req, now)
    [(partition, offset)] = await write(request, [
        Outgoing(config.cancellations_topic, record["id"], config.serde.encode(BULK_CANCELLATION, record))])
    await poll_until(lambda: cancellations.applied(partition, offset), config.run_wait_seconds)
    return {"data": cancellation_view(record, 0)}


@router.get("/v1/cancellations", responses=answers(401, 503))
async def list_cancellations(request: Request) -> dict[str, Any]:
    runs, cancellations = await ensure_ready(request)
    return {"data": [cancellation_view(r, runs.cancelled_by(r["id"])) for r in cancellations.all()]}


@router.delete("/v1/cancellations/{cancellation_id}", responses=answers(401, 404, 503))
async def stop_cancellation(cancellation_id: str, request: Request) -> dict[str, Any]:
    """Stop a bulk cancellation: runs it already cancelled stay cancelled; no further ones are."""
    config = api_config(request)
    runs, cancellations = await ensure_ready(request)
    record = cancellations.get(cancellation_id)
    if record is None:
        raise ApiError(404, f"cancellation {cancellation_id} not found")
    if record.get("stopped_at") is None:
        record = {**record, "stopped_at": now_ms()}
        [(partition, offset)] = await write(request, [
            Outgoing(config.cancellations_topic, cancellation_id, config.serde.encode(BULK_CANCELLATION, record))])
        await poll_until(lambda: cancellations.applied(partition, offset), config.run_wait_seconds)
    return {"data": cancellation_view(record, runs.cancelled_by(cancellation_id))}
