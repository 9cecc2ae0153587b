"""``POST /e/{event_key}``: events in, Inngest's ingest endpoint.

Each event is produced to ``events`` keyed by its id, and the answer waits for the broker's acknowledgement
of every one, so a 200 means the events are durable. The event key is checked by a dependency
(:func:`~pipeline.api.auth.require_event_key`) before the body is read.

The usual body (events of plain JSON types: a name, maybe data, user, id, ts and v) takes a fast path that
checks each event by hand and builds its Avro record directly, with no pydantic model per event. It takes
only what :class:`~pipeline.serde.models.Event` takes with the same result; anything else (a wrong type, a
missing name, an unknown field, a ts given as a string...) goes through the model, event by event, as before,
so a bad event gets the model's 400 and a value the model coerces is coerced the same way.
"""

from __future__ import annotations

import json
import os
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError

from ..serde import EVENT, SerdeError
from ..serde.models import Event, now_ms
from .arrival import phases, signal_names
from .auth import require_event_key
from .bodies import json_body
from .context import api_config, write
from .edge import ApiError, SafeJSONResponse, answers, body, event_body_schema
from .errors import field_errors, summary
from .metrics import EVENTS_INGESTED, REQUESTS_REFUSED
from .seeded import apply_seed
from .writer import Outgoing

router = APIRouter()

_FIELDS = frozenset(Event.model_fields)
_NAME_MAX = 512  # Event.name's max_length
_TS_MAX = 2**63 - 1  # Event.ts's le
_MISSING: Any = object()
_dumps = json.JSONEncoder(separators=(",", ":")).encode  # json.dumps(x, separators=(",", ":")), without a new
# encoder per call

_RANDOM_MAX = (1 << 80) - 1


class UlidBatches:
    """ULIDs for whole batches, ascending like ``str(ULID())`` gives them one by one (python-ulid is monotonic:
    within one millisecond each id is the previous one's random part plus 1, and a new millisecond starts from
    fresh randomness).

    A ULID's 26 Crockford base32 characters are 10 for the 48-bit time and 16 for the 80 random bits, which fall
    on whole characters. The ids of a batch are consecutive, so they share their first 24 characters within each
    run of 1,024 values, and the last two come from a table. Used on the event loop only."""

    def __init__(self) -> None:
        self._ts = -1
        self._last = 0

    def take(self, n: int, ts_ms: int) -> list[str]:
        if ts_ms <= self._ts:  # the same millisecond (or the clock stepped back): go on from the last id
            ts_ms, first = self._ts, self._last + 1
            if first + n - 1 > _RANDOM_MAX:  # the millisecond's ids are used up: the next one's
                ts_ms, first = ts_ms + 1, int.from_bytes(os.urandom(10), "big") >> 1
        else:
            first = int.from_bytes(os.urandom(10), "big") >> 1  # room for any batch above it
        self._ts, self._last = ts_ms, first + n - 1
        head = _crockford(ts_ms, 10)
        out: list[str] = []
        value = first
        while len(out) < n:
            high, low = divmod(value, 1024)
            prefix = head + _crockford(high, 14)
            count = min(1024 - low, n - len(out))
            out += [prefix + pair for pair in _PAIRS[low:low + count]]
            value += count
        return out


def _crockford(value: int, chars: int) -> str:
    """``value`` in ``chars`` Crockford base32 characters, most significant first."""
    return "".join([_ALPHABET[(value >> shift) & 31] for shift in range(5 * (chars - 1), -5, -5)])


_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]  # the last two characters of each 10-bit value
_ulids = UlidBatches()


def _fast_records(items: list[Any], now: int) -> list[dict[str, Any]] | None:
    """The Avro records of the events, ids and ts filled; None as soon as one event is not of the plain kind
    that :class:`Event` surely takes as it is (the caller then goes through the model)."""
    records: list[dict[str, Any]] = []
    unnamed: list[dict[str, Any]] = []
    for item in items:
        if type(item) is not dict or not _FIELDS.issuperset(item):
            return None
        name = item.get("name")
        if type(name) is not str or not 0 < len(name) <= _NAME_MAX or not name.strip():
            return None
        data_json = _object_json(item.get("data", _MISSING))
        user_json = _object_json(item.get("user", _MISSING))
        if data_json is None or user_json is None:
            return None
        eid = item.get("id", "")
        ts = item.get("ts", 0)
        v = item.get("v")
        if type(eid) is not str or type(ts) is not int or not 0 <= ts <= _TS_MAX or not (v is None or type(v) is str):
            return None
        record = {"id": eid, "name": name, "data": data_json, "user": user_json, "ts": ts or now, "v": v}
        if not eid:
            unnamed.append(record)
        records.append(record)
    if unnamed:
        for record, eid in zip(unnamed, _ulids.take(len(unnamed), now), strict=True):
            record["id"] = eid
    return records


def _object_json(value: Any) -> str | None:
    """An event's ``data`` or ``user`` as the JSON text its record carries (absent: ``{}``); None when it is not
    a JSON object (``null`` included), so the event goes through the model and gets its 400."""
    if value is _MISSING:
        return "{}"
    if type(value) is dict:
        return _dumps(value) if value else "{}"
    return None


def _model_records(items: list[Any], batch: bool) -> list[dict[str, Any]]:
    """The Avro records through the :class:`Event` model, event by event; a 400 naming every invalid event."""
    events: list[Event] = []
    errors: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        prefix: tuple[Any, ...] = (i,) if batch else ()
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
    return [ev.to_record() for ev in events]


@router.post("/e/{event_key}", responses=answers(400, 401, 413), openapi_extra=body(event_body_schema()),
             response_model=dict[str, Any], dependencies=[Depends(require_event_key)])
async def send_events(request: Request) -> SafeJSONResponse:
    """Ingest one event or a list of them (Inngest's ``/e/{key}``); answers the ids in order."""
    config = api_config(request)
    payload = await json_body(request)
    batch = isinstance(payload, list)
    items = payload if batch else [payload]
    apply_seed(items, request.headers.get("x-inngest-event-id-seed"))  # an SDK's retried send: the same ids
    records = _fast_records(items, now_ms())
    if records is None:
        records = _model_records(items, batch)
    topic, encode = config.events_topic, config.serde.encode
    outgoing = []
    for record in records:
        try:
            outgoing.append(Outgoing(topic, record["id"], encode(EVENT, record)))
        except SerdeError as exc:
            raise ApiError(400, f"invalid event {record['id']}: {exc}") from None
    for part in phases([record["name"] for record in records], signal_names(config.registry)):
        # cancels after their triggers (arrival.py); where the events landed is not needed
        await write(request, outgoing[part.start:part.stop], positions=False)
    EVENTS_INGESTED.inc(len(records))
    # A response made here: FastAPI would otherwise walk the answer with jsonable_encoder, id by id.
    return SafeJSONResponse({"ids": [record["id"] for record in records], "status": 200})
