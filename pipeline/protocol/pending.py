"""Pending debounces and batches: the records of the ``debounces`` and ``batches`` topics (the run owner's state
changelogs, compacted, co-partitioned with ``run-commands``), read back by the owner's restore and by the API.

One record per (function, key value), keyed ``<function id> US <key value JSON>`` (:func:`pending_key`), its
value JSON text (a small record read by two services, not worth a schema of its own). A tombstone means the
pending debounce or batch has started its run or was cancelled. Fields:

* ``kind``: ``debounce`` | ``batch``; ``function_id``, ``key`` (the key value's JSON text, "" with no key);
* ``run_id``: the run it will start (a debounce: its current event's; a batch: its first event's);
* ``commands``: the start commands it holds (a debounce: the one event that will run; a batch: every event,
  in arrival order), as the matcher sent them (run id, event JSON, received_at);
* ``first_received_at``, ``last_received_at`` and ``deadline_at`` (broker receive times, ms);
* ``ts``: the event time of a debounce's event (an event with an older ``ts`` does not replace it);
* ``later``: start commands received at or after ``deadline_at`` while it waited for the watermark gate: they
  begin the next debounce or batch of the key once this one has started.
"""

from __future__ import annotations

import json
from typing import Any, Literal, TypedDict

PendingKind = Literal["debounce", "batch"]


class PendingRecord(TypedDict):
    kind: PendingKind
    function_id: str
    key: str
    run_id: str
    commands: list[dict[str, Any]]
    first_received_at: int
    last_received_at: int
    deadline_at: int
    ts: int
    later: list[dict[str, Any]]
    updated_at: int


def pending_key(function_id: str, key: str) -> str:
    return f"{function_id}\x1f{key}"


def encode_pending(record: PendingRecord) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode()


def decode_pending(raw: bytes) -> PendingRecord:
    value = json.loads(raw)
    if not isinstance(value, dict) or value.get("kind") not in ("debounce", "batch") \
            or not isinstance(value.get("commands"), list):
        raise ValueError(f"not a pending debounce or batch record: {raw[:80]!r}")
    value.setdefault("later", [])
    record: PendingRecord = value  # type: ignore[assignment]  # checked above, field by field where it matters
    return record


def start_fields(cmd: dict[str, Any]) -> dict[str, Any]:
    """The part of a start command a pending record keeps (enough to start the run later)."""
    return {"run_id": cmd["run_id"], "function_id": cmd["function_id"], "event": cmd["event"],
            "received_at": cmd["received_at"], "source_id": cmd.get("source_id"), "kind": "start",
            "ts": cmd.get("ts"), "reason": None, "attempt": 0, "step_id": None}
