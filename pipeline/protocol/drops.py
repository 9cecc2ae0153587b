"""Records of the flow controls that drop events before a run exists (rate limit, idempotency).

Pure. The run owner writes both; it reads ``FlowLimit`` back as its state store's changelog (``rate-limits``), and
the API reads ``DroppedEvent`` (``dropped-events``) to list what was dropped.
"""

from __future__ import annotations

import json
from typing import Any

from .records import DroppedEvent, FlowLimit

RATE_LIMIT = "rate_limit"
IDEMPOTENCY = "idempotency"
REASONS = (RATE_LIMIT, IDEMPOTENCY)


def key_json(value: Any) -> str:
    """A key's value as it is stored and shown: JSON with sorted keys (as concurrency slot sets name it)."""
    return json.dumps(value, sort_keys=True, default=str)


def limit_key(function_id: str, option: str, key: str | None) -> str:
    """The ``rate-limits`` record key of one (function, option, key value): one GCRA state each."""
    return f"{function_id}\x1f{option}\x1f{'' if key is None else key}"


def flow_limit(function_id: str, option: str, key: str | None, tat: int) -> FlowLimit:
    """The state after an admit: the TAT, which is also when the entry stops mattering."""
    return {"function_id": function_id, "option": option, "key": key, "tat": tat, "expires_at": tat}


def dropped_event(function_id: str, run_id: str, event: dict[str, Any], event_json: str, reason: str,
                  key: str | None, received_at: int, now_ms: int) -> DroppedEvent:
    return {"function_id": function_id, "run_id": run_id, "event_id": str(event.get("id") or ""),
            "event_name": str(event.get("name") or ""), "reason": reason, "key": key, "received_at": received_at,
            "dropped_at": now_ms, "event": event_json}


def dropped_dict(record: DroppedEvent) -> dict[str, Any]:
    """A dropped event as the API shows it (the event parsed)."""
    out: dict[str, Any] = dict(record)
    out["event"] = json.loads(record["event"])
    return out
