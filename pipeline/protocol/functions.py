"""The ``functions`` topic's record: a function synced from an app over HTTP, as every service reads it.

Functions are data: a sync (``POST /fn/register``) writes one :class:`~pipeline.protocol.records.FunctionDef`
per function, keyed by its composite id, to a compacted topic that the matcher, the run owner, the workers and
the API read whole at start and then follow. The definition travels as JSON in one normalised spelling (the
SDKs spell some keys differently; :mod:`pipeline.apps.register` reads theirs), so that every reader compiles
the same function from it. Pure: no Kafka here.
"""

from __future__ import annotations

import json
from typing import Any

from .records import FunctionDef


def function_def(fn_id: str, app_id: str, name: str, url: str, definition: dict[str, Any], *, app_url: str,
                 sdk: str, synced_at: int, waits: list[dict[str, Any]] | None = None) -> FunctionDef:
    """The record of one synced function. ``definition``: the normalised keys (see ``pipeline.apps.register``)."""
    record: FunctionDef = {
        "id": fn_id,
        "app_id": app_id,
        "name": name,
        "url": url,
        "definition": json.dumps(definition, sort_keys=True, separators=(",", ":")),
        "waits": json.dumps(waits or [], sort_keys=True, separators=(",", ":")),
        "app_url": app_url,
        "sdk": sdk,
        "synced_at": synced_at,
    }
    return record


def same_function(a: FunctionDef, b: FunctionDef) -> bool:
    """Whether two records define the same function (the time of the sync and the learned waits aside):
    a re-sync that changes nothing writes nothing and answers ``modified: false``."""
    keys = ("id", "app_id", "name", "url", "definition", "app_url", "sdk")
    return all(a[k] == b[k] for k in keys)  # type: ignore[literal-required]


def learned_waits(record: FunctionDef) -> list[dict[str, Any]]:
    """The waits its runs reported so far: ``[{"event": name}]``, for the matcher to signal by name."""
    waits = json.loads(record["waits"] or "[]")
    return [w for w in waits if isinstance(w, dict) and isinstance(w.get("event"), str)]


def with_wait(record: FunctionDef, event: str) -> FunctionDef | None:
    """The record with ``event`` added to its learned waits, or None when it is known already."""
    waits = learned_waits(record)
    if any(w["event"] == event for w in waits):
        return None
    new = dict(record)
    new["waits"] = json.dumps([*waits, {"event": event}], sort_keys=True, separators=(",", ":"))
    return new  # type: ignore[return-value]
