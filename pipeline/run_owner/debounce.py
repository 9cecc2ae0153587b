"""Debounce rules, pure: what one start command does to a function key's pending debounce.

* Each event restarts the period: the run starts ``period`` after the last event received (broker time), or
  ``timeout`` after the first one, whichever comes first (Inngest: "timeout caps the total wait").
* The run gets the event with the greatest ``ts``; an event with an older ``ts`` neither replaces it nor
  extends the wait (ties go to the later arrival).
* An event received at or after the deadline is not part of this debounce: it is kept in ``later`` and starts
  the next one once this one has run (the deadline is waiting for the watermark gate).
* The same start command applied twice changes nothing (a replayed command).
"""

from __future__ import annotations

import json
from typing import Any

from ..protocol.pending import PendingRecord, start_fields


def event_ts(cmd: dict[str, Any]) -> int:
    ts = json.loads(cmd["event"]).get("ts")
    return int(ts) if isinstance(ts, int | float) else int(cmd["received_at"] or 0)


def deadline(first: int, last: int, period_ms: int, timeout_ms: int | None) -> int:
    at = last + period_ms
    return at if timeout_ms is None else min(at, first + timeout_ms)


def debounce_add(record: PendingRecord | None, cmd: dict[str, Any], key: str, period_ms: int,
                 timeout_ms: int | None, now_ms: int) -> PendingRecord | None:
    """The pending debounce after ``cmd`` (None: unchanged)."""
    received = int(cmd["received_at"] or now_ms)
    kept = start_fields(cmd)
    if record is None:
        return {"kind": "debounce", "function_id": cmd["function_id"], "key": key, "run_id": cmd["run_id"],
                "commands": [kept], "first_received_at": received, "last_received_at": received,
                "deadline_at": deadline(received, received, period_ms, timeout_ms), "ts": event_ts(cmd),
                "later": [], "updated_at": now_ms}
    if cmd["run_id"] == record["run_id"] or any(c["run_id"] == cmd["run_id"] for c in record["later"]):
        return None
    if received >= record["deadline_at"]:
        return {**record, "later": [*record["later"], kept], "updated_at": now_ms}
    ts = event_ts(cmd)
    first = min(record["first_received_at"], received)
    if ts < record["ts"]:
        if first == record["first_received_at"]:
            return None
        # an older event that reached the owner after a newer one (another events partition): it replaces nothing
        # and extends nothing, but the timeout counts from the first event received, whichever arrived first
        return {**record, "first_received_at": first, "updated_at": now_ms,
                "deadline_at": deadline(first, record["last_received_at"], period_ms, timeout_ms)}
    last = max(record["last_received_at"], received)
    return {**record, "run_id": cmd["run_id"], "commands": [kept], "ts": ts, "first_received_at": first,
            "last_received_at": last, "deadline_at": deadline(first, last, period_ms, timeout_ms),
            "updated_at": now_ms}
