"""Batch rules, pure: what one start command does to a function key's pending batch.

* A batch starts its run when it holds ``max_size`` events, or ``timeout`` after its first event was received
  (broker time; the wait does not slide), whichever comes first.
* Its events must fit one run state, which is one Kafka record: a batch whose events' JSON would pass
  ``max_bytes`` starts with what it has, and the event begins the next batch.
* An event received at or after the deadline is not part of this batch: it is kept in ``later`` and begins
  the next one once this one has run (the deadline is waiting for the watermark gate).
* The same start command applied twice changes nothing (a replayed command).
"""

from __future__ import annotations

from typing import Any

from ..protocol.pending import PendingRecord, start_fields


def batch_bytes(record: PendingRecord) -> int:
    return sum(len(c["event"]) + 1 for c in record["commands"])


def batch_add(record: PendingRecord | None, cmd: dict[str, Any], key: str, max_size: int, timeout_ms: int,
              max_bytes: int, now_ms: int) -> tuple[PendingRecord | None, list[PendingRecord]]:
    """(the pending batch after ``cmd``, batches to start now). The first is None when it is unchanged, or when
    it started (check the second)."""
    received = int(cmd["received_at"] or now_ms)
    kept = start_fields(cmd)
    if record is None:
        return {"kind": "batch", "function_id": cmd["function_id"], "key": key, "run_id": cmd["run_id"],
                "commands": [kept], "first_received_at": received, "last_received_at": received,
                "deadline_at": received + timeout_ms, "ts": 0, "later": [], "updated_at": now_ms}, []
    if any(c["run_id"] == cmd["run_id"] for c in (*record["commands"], *record["later"])):
        return None, []
    if received >= record["deadline_at"]:
        return {**record, "later": [*record["later"], kept], "updated_at": now_ms}, []
    if batch_bytes(record) + len(kept["event"]) + 1 > max_bytes:
        nxt, _ = batch_add(None, cmd, key, max_size, timeout_ms, max_bytes, now_ms)
        assert nxt is not None
        return nxt, [record]
    grown: PendingRecord = {**record, "commands": [*record["commands"], kept],
                            "last_received_at": max(record["last_received_at"], received), "updated_at": now_ms}
    if len(grown["commands"]) >= max_size:
        return None, [grown]
    return grown, []
