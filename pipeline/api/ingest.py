"""``POST /e/{event_key}``: events in, Inngest's ingest endpoint.

Each event is produced to ``events`` keyed by its id, and the answer waits for the broker's acknowledgement
of every one, so a 200 means the events are durable. The event key is checked by a dependency
(:func:`~pipeline.api.auth.require_event_key`) before the body is read.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError

from ..serde import EVENT, SerdeError
from ..serde.models import Event
from .auth import require_event_key
from .bodies import json_body
from .context import api_config, write
from .edge import ApiError, answers, body, event_body_schema
from .errors import field_errors, summary
from .metrics import EVENTS_INGESTED, REQUESTS_REFUSED
from .writer import Outgoing

router = APIRouter()


@router.post("/e/{event_key}", responses=answers(400, 401, 413), openapi_extra=body(event_body_schema()),
             dependencies=[Depends(require_event_key)])
async def send_events(request: Request) -> dict[str, Any]:
    """Ingest one event or a list of them (Inngest's ``/e/{key}``); answers the ids in order."""
    config = api_config(request)
    payload = await json_body(request)
    items = payload if isinstance(payload, list) else [payload]
    events: list[Event] = []
    errors: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        prefix: tuple[Any, ...] = (i,) if isinstance(payload, list) else ()
        if not isinstance(item, dict):
            errors.append({"loc": list(prefix), "msg": "an event must be a JSON object", "type": "type_error"})
            continue
        try:
            events.append(Event.model_validate(item).with_defaults())
        except ValidationError as exc:
            errors.extend(field_errors(exc, prefix))
    if errors:
        REQUESTS_REFUSED.labels("invalid_event").inc()
        raise ApiError(400, f"invalid event: {summary(errors)}", errors)
    records = []
    for ev in events:
        try:
            records.append(Outgoing(config.events_topic, ev.id, config.serde.encode(EVENT, ev.to_record())))
        except SerdeError as exc:
            raise ApiError(400, f"invalid event {ev.id}: {exc}") from None
    await write(request, records)
    EVENTS_INGESTED.inc(len(events))
    return {"ids": [ev.id for ev in events], "status": 200}
