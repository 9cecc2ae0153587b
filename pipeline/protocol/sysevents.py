"""Builders of Inngest's system events (``inngest/function.*``), field for field as Inngest sends them.

Ids are deterministic so that a replay or a retried transaction cannot send a second copy:
``function.cancelled`` has the run id as its id (as the design asks); ``finished`` and
``failed`` get ULIDs derived from the run id. They are built as the records that go on ``system-events``
(``data`` as JSON text), with the run's stored trigger and output JSON spliced in, not re-serialised.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..protocol.errors import CANCELLED_ERROR, exception_payload
from .ids import derived_ulid
from .records import EventRecord

FUNCTION_CANCELLED = "inngest/function.cancelled"
FUNCTION_FINISHED = "inngest/function.finished"
FUNCTION_FAILED = "inngest/function.failed"
FUNCTION_INVOKED = "inngest/function.invoked"
SCHEDULED_TIMER = "inngest/scheduled.timer"  # a TriggerCron tick (data: cron, _inngest.fn_id)

__all__ = ["CANCELLED_ERROR", "exception_payload"]


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _record(name: str, event_id: str, now_ms: int, data: str) -> EventRecord:
    return {"id": event_id, "name": name, "data": data, "user": "{}", "ts": now_ms, "v": None}


def _trigger_fields(state: Mapping[str, Any]) -> str:
    """``"event":E,"events":[E]`` with the run's stored trigger JSON spliced in as it is: a run's end would
    otherwise parse the trigger and serialise it twice (the largest cost of ending a run)."""
    event = state["event"]
    return f'"event":{event},"events":[{event}]'


def function_cancelled(state: Mapping[str, Any], now_ms: int) -> EventRecord:
    """The ``inngest/function.cancelled`` event for a run, as in the seed example (its id is the run id)."""
    data = (f'{{"error":{_json(CANCELLED_ERROR)},{_trigger_fields(state)},'
            f'"function_id":{_json(state["function_id"])},"run_id":{_json(state["run_id"])}}}')
    return _record(FUNCTION_CANCELLED, state["run_id"], now_ms, data)


def function_failed(state: Mapping[str, Any], error: Mapping[str, Any], now_ms: int) -> EventRecord:
    """``inngest/function.failed``: sent on final failure only (never on cancellation)."""
    data = (f'{{"error":{_json(error)},{_trigger_fields(state)},'
            f'"function_id":{_json(state["function_id"])},"run_id":{_json(state["run_id"])}}}')
    return _record(FUNCTION_FAILED, derived_ulid(state["queued_at"], "failed", state["run_id"]), now_ms, data)


def function_finished(state: Mapping[str, Any], now_ms: int, *, result_json: str = "null",
                      error: Mapping[str, Any] | None = None) -> EventRecord:
    """``inngest/function.finished``: sent for every outcome, with ``result`` (the run's output, JSON text) or
    ``error``. A run started by ``step.invoke`` carries the parent's ``invoke_correlation_id``."""
    run_id = _json(state["run_id"])
    data = f'{{{_trigger_fields(state)},"function_id":{_json(state["function_id"])},"run_id":{run_id},' \
           f'"correlation_id":{run_id}'
    correlation = _invoke_correlation_id(state["event"])
    if correlation is not None:
        data += f',"invoke_correlation_id":{_json(correlation)}'
    data += f',"error":{_json(error)}}}' if error is not None else f',"result":{result_json}}}'
    return _record(FUNCTION_FINISHED, derived_ulid(state["queued_at"], "finished", state["run_id"]), now_ms, data)


def invoke_dropped(event_json: str, function_id: str, run_id: str, received_at: int, message: str,
                   now_ms: int) -> EventRecord | None:
    """The ``function.finished`` that fails a ``step.invoke`` whose child was never started (its rate limit or
    idempotency dropped the ``function.invoked`` event), as Inngest's invoke-fail handler sends it: the caller's
    wait gets ``error`` instead of hanging until its timeout. None if the event is not an invoke."""
    correlation = _invoke_correlation_id(event_json)
    if correlation is None:
        return None
    error = {"name": "Error", "message": message}
    data = (f'{{"event":{event_json},"events":[{event_json}],"function_id":{_json(function_id)},'
            f'"run_id":{_json(run_id)},"correlation_id":{_json(run_id)},'
            f'"invoke_correlation_id":{_json(correlation)},"error":{_json(error)}}}')
    return _record(FUNCTION_FINISHED, derived_ulid(received_at, "invoke-dropped", run_id), now_ms, data)


def _invoke_correlation_id(event_json: str) -> str | None:
    """The parent's correlation id if the trigger is a ``step.invoke`` (parsed only when it can be one)."""
    if FUNCTION_INVOKED not in event_json:
        return None
    event = json.loads(event_json)
    invoked = (event.get("data") or {}).get("_inngest") if event.get("name") == FUNCTION_INVOKED else None
    if isinstance(invoked, dict) and invoked.get("invoke_correlation_id"):
        return str(invoked["invoke_correlation_id"])
    return None
