"""An event record as any producer may write it: the record tells its encoding, not a setting.

Users already have producers (a Java or Go service, Kafka Connect, a Node app) and the topics they write. So the
``events`` topic takes, record by record:

* the project's own encoding, Avro single-object (``C3 01`` + the schema's fingerprint), what the API, the
  SDK clients and the services write;
* a JSON object in Inngest's event shape, ``{"name": ..., "data": {...}, "id"?, "ts"?, "user"?, "v"?}``,
  checked by the same model as ``POST /e`` (so the same event is refused for the same reason either way);
* Confluent's wire format (``00`` + a 4-byte schema id + Avro), decoded through the Schema Registry when one is
  configured (:mod:`pipeline.serde.registry`).

Anything else is refused with a reason that says what was expected, and the service dead-letters it.

A JSON event without an ``id`` keeps it empty: the matcher derives one from the record's coordinates (topic,
partition, offset), so a replay of the same record starts nothing twice. Without a ``ts`` it takes the broker's
timestamp of the record, which a replay reads back the same.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from . import EVENT
from .avro import MAGIC, Serde
from .errors import SerdeError
from .models import Event

EXPECTED = ("expected an Avro single-object record (C3 01 + fingerprint), a JSON object in Inngest's event shape "
            '({"name": "...", "data": {...}}), or Confluent\'s wire format (00 + schema id)')

# Confluent wire format: (schema id, the Avro body) -> the event's fields; None when no registry is configured
ConfluentReader = Callable[[bytes], dict[str, Any]]


def read_event(serde: Serde, payload: bytes | None, received_at: int,
               confluent: ConfluentReader | None = None) -> dict[str, Any]:
    """The ``pipeline.Event`` record (``data`` and ``user`` as JSON text) of an events-topic record."""
    if payload is None:
        raise SerdeError("empty record (tombstone) on an events topic")
    if payload[:2] == MAGIC:
        return serde.decode_as(EVENT, payload)
    if payload[:1] == b"\x00":
        if len(payload) < 5:
            raise SerdeError(f"not an event: {len(payload)} bytes; {EXPECTED}")
        if confluent is None:
            schema_id = int.from_bytes(payload[1:5], "big")
            raise SerdeError(f"an Avro record in Confluent's wire format (schema id {schema_id}) needs a schema "
                             "registry: set PIPELINE_SCHEMA_REGISTRY_URL")
        return _from_object(confluent(payload), received_at, "Confluent Avro record")
    head = payload[:64].lstrip()
    if head[:1] == b"{":
        try:
            obj = json.loads(payload)
        except (UnicodeDecodeError, ValueError) as exc:
            raise SerdeError(f"not an event: invalid JSON ({exc}); {EXPECTED}") from None
        return _from_object(obj, received_at, "JSON event")
    raise SerdeError(f"not an event: starts with {payload[:8]!r}; {EXPECTED}")


def _from_object(obj: Any, received_at: int, what: str) -> dict[str, Any]:
    """A decoded object in Inngest's event shape -> the Event record (id left empty if absent)."""
    if not isinstance(obj, dict):
        raise SerdeError(f"not an event: a {what} must be an object, got {type(obj).__name__}; {EXPECTED}")
    try:
        event = Event.model_validate(obj)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'event'}: {e['msg']}" for e in exc.errors())
        raise SerdeError(f"invalid {what}: {problems}") from None
    record = event.to_record()
    if not record["ts"]:
        record["ts"] = received_at
    return record
