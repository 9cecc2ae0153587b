"""Builders of Inngest's system events (``inngest/function.*``), field for field as Inngest sends them.

Ids are deterministic so that a replay or a retried transaction cannot send a second copy:
``function.cancelled`` has the run id as its id (as the design asks); ``finished`` and
``failed`` get ULIDs derived from the run id.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..protocol.errors import CANCELLED_ERROR, exception_payload
from .ids import derived_ulid

FUNCTION_CANCELLED = "inngest/function.cancelled"
FUNCTION_FINISHED = "inngest/function.finished"
FUNCTION_FAILED = "inngest/function.failed"
FUNCTION_INVOKED = "inngest/function.invoked"
SCHEDULED_TIMER = "inngest/scheduled.timer"  # a TriggerCron tick (data: cron, _inngest.fn_id)

__all__ = ["CANCELLED_ERROR", "exception_payload"]


def _trigger(state: Mapping[str, Any]) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(state["event"])
    return event


def function_cancelled(state: Mapping[str, Any], now_ms: int) -> dict[str, Any]:
    """The ``inngest/function.cancelled`` event for a run, as in the seed example."""
    event = _trigger(state)
    return {
        "name": FUNCTION_CANCELLED,
        "data": {
            "error": dict(CANCELLED_ERROR),
            "event": event,
            "events": [event],
            "function_id": state["function_id"],
            "run_id": state["run_id"],
        },
        "id": state["run_id"],
        "ts": now_ms,
        "user": {},
    }


def function_failed(state: Mapping[str, Any], error: dict[str, Any], now_ms: int) -> dict[str, Any]:
    """``inngest/function.failed``: sent on final failure only (never on cancellation)."""
    event = _trigger(state)
    return {
        "name": FUNCTION_FAILED,
        "data": {"error": error, "event": event, "events": [event], "function_id": state["function_id"],
                 "run_id": state["run_id"]},
        "id": derived_ulid(state["queued_at"], "failed", state["run_id"]),
        "ts": now_ms,
        "user": {},
    }


def function_finished(state: Mapping[str, Any], now_ms: int, *, result: Any = None,
                      error: dict[str, Any] | None = None) -> dict[str, Any]:
    """``inngest/function.finished``: sent for every outcome, with ``result`` or ``error``."""
    event = _trigger(state)
    data: dict[str, Any] = {"event": event, "events": [event], "function_id": state["function_id"],
                            "run_id": state["run_id"], "correlation_id": state["run_id"]}
    invoked = (event.get("data") or {}).get("_inngest") if event.get("name") == FUNCTION_INVOKED else None
    if isinstance(invoked, dict) and invoked.get("invoke_correlation_id"):
        data["invoke_correlation_id"] = invoked["invoke_correlation_id"]  # the parent's step.invoke waits on it
    if error is not None:
        data["error"] = error
    else:
        data["result"] = result
    return {
        "name": FUNCTION_FINISHED,
        "data": data,
        "id": derived_ulid(state["queued_at"], "finished", state["run_id"]),
        "ts": now_ms,
        "user": {},
    }
