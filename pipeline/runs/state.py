"""Run state transitions: pure functions from (state, input, now) to (new state, effects).

No Kafka here. The run owner turns a :class:`Transition` into output records, and the
unit tests check every transition without a broker. States are the plain dicts of the
``RunState`` Avro record, so nothing is converted on the hot path.

Statuses: Queued → Running ⇄ Sleeping → Completed | Failed | Cancelled. An ended run never
changes again: cancelling it is a no-op, and so is any late command.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..sysevents import builders
from ..serde.models import ENDED_STATUSES

MAX_BACKOFF_MS = 5 * 60 * 1000


@dataclass
class Transition:
    """What one input did to one run. ``state`` is None when nothing changed (a no-op)."""

    state: dict[str, Any] | None = None
    commands: list[dict[str, Any]] = field(default_factory=list)
    system_events: list[dict[str, Any]] = field(default_factory=list)
    user_events: list[dict[str, Any]] = field(default_factory=list)
    ended: bool = False


def is_ended(state: dict[str, Any]) -> bool:
    return state["status"] in ENDED_STATUSES


def execute_command(state: dict[str, Any], now_ms: int) -> dict[str, Any]:
    """The run-queue entry that asks the owner to run the next step of ``state``'s attempt."""
    return {"kind": "execute", "run_id": state["run_id"], "function_id": state["function_id"], "ts": now_ms,
            "event": None, "received_at": None, "reason": None, "source_id": None, "attempt": state["attempt"]}


def cancel_command(run_id: str, function_id: str, reason: str, source_id: str | None, now_ms: int) -> dict[str, Any]:
    """A cancel command for the run owner (cancel_on, rest, bulk or timeout)."""
    return {"kind": "cancel", "run_id": run_id, "function_id": function_id, "ts": now_ms, "event": None,
            "received_at": None, "reason": reason, "source_id": source_id, "attempt": 0}


def start_command(run_id: str, function_id: str, event_json: str, received_at: int, now_ms: int) -> dict[str, Any]:
    """The command that schedules a run (sent by the matcher)."""
    return {"kind": "start", "run_id": run_id, "function_id": function_id, "ts": now_ms, "event": event_json,
            "received_at": received_at, "reason": None, "source_id": None, "attempt": 0}


def _bump(state: dict[str, Any], **changes: Any) -> dict[str, Any]:
    new = dict(state)
    new.update(changes)
    new["version"] = state.get("version", 0) + 1
    return new


def start(cmd: dict[str, Any], event_id: str, now_ms: int, *, start_timeout_ms: int | None) -> Transition:
    """Schedule a run: Queued, with its first execute command queued."""
    state = {
        "run_id": cmd["run_id"], "function_id": cmd["function_id"], "event_id": event_id, "event": cmd["event"],
        "status": "Queued", "attempt": 0, "steps": [], "output": None, "error": None,
        "received_at": cmd["received_at"] or now_ms, "queued_at": now_ms, "started_at": None, "ended_at": None,
        "wake_at": None, "pending_step": None, "deadline_at": now_ms + start_timeout_ms if start_timeout_ms else None,
        "cancel_reason": None, "cancel_source": None, "version": 1,
    }
    return Transition(state=state, commands=[execute_command(state, now_ms)])


def begin(state: dict[str, Any], now_ms: int, *, finish_timeout_ms: int | None) -> dict[str, Any]:
    """Queued → Running at the first execution; the finish timeout counts from here."""
    if state["status"] != "Queued":
        return state
    return _bump(state, status="Running", started_at=now_ms,
                 deadline_at=now_ms + finish_timeout_ms if finish_timeout_ms else None)


def step_completed(state: dict[str, Any], step_id: str, op: str, output: str | None, now_ms: int) -> Transition:
    """Store a completed step and queue the next execution. Success resets the attempt counter."""
    steps = list(state["steps"])
    steps.append({"id": step_id, "op": op, "output": output, "completed_at": now_ms})
    new = _bump(state, steps=steps, status="Running", wake_at=None, attempt=0)
    return Transition(state=new, commands=[execute_command(new, now_ms)])


def sleep(state: dict[str, Any], step_id: str, wake_at: int, now_ms: int) -> Transition:
    """The run sleeps until ``wake_at``; the owner's timer wakes it (no thread is held)."""
    if wake_at <= now_ms:
        return step_completed(state, step_id, "sleep", None, now_ms)
    return Transition(state=_bump(state, status="Sleeping", wake_at=wake_at, pending_step=step_id))


def wake(state: dict[str, Any], now_ms: int) -> Transition:
    """A timer fired: a sleeping run records its sleep step as done; a retry backoff just resumes."""
    if is_ended(state) or state.get("wake_at") is None or state["wake_at"] > now_ms:
        return Transition()
    if state["status"] == "Sleeping":
        return step_completed(_bump(state, wake_at=None, pending_step=None), state["pending_step"], "sleep", None,
                              now_ms)
    new = _bump(state, wake_at=None)
    return Transition(state=new, commands=[execute_command(new, now_ms)])


def failed_attempt(state: dict[str, Any], error: dict[str, Any], retries: int, now_ms: int, *,
                   backoff_ms: int, retriable: bool = True) -> Transition:
    """A step or the handler raised. Retry with exponential backoff, or fail the run when retries are spent."""
    attempt = state["attempt"] + 1
    if retriable and attempt <= retries:
        delay = min(backoff_ms * (2 ** (attempt - 1)), MAX_BACKOFF_MS)
        new = _bump(state, attempt=attempt, wake_at=now_ms + delay, error=json.dumps(error), status="Running")
        return Transition(state=new)
    new = _bump(state, status="Failed", error=json.dumps(error), ended_at=now_ms, wake_at=None, deadline_at=None,
                attempt=attempt)
    return Transition(state=new, ended=True, system_events=[
        builders.function_failed(new, error, now_ms),
        builders.function_finished(new, now_ms, error=error),
    ])


def completed(state: dict[str, Any], output_json: str, now_ms: int) -> Transition:
    """The handler returned: Completed, with ``function.finished`` carrying the result."""
    new = _bump(state, status="Completed", output=output_json, error=None, ended_at=now_ms, wake_at=None,
                deadline_at=None)
    return Transition(state=new, ended=True, system_events=[
        builders.function_finished(new, now_ms, result=json.loads(output_json)),
    ])


def cancel(state: dict[str, Any], reason: str, source_id: str | None, now_ms: int) -> Transition:
    """Cancel an active run at once (sleeping ones too). An ended run is left alone: no second system event."""
    if is_ended(state):
        return Transition()
    error = dict(builders.CANCELLED_ERROR)
    new = _bump(state, status="Cancelled", ended_at=now_ms, wake_at=None, pending_step=None, deadline_at=None,
                error=json.dumps(error), cancel_reason=reason, cancel_source=source_id)
    return Transition(state=new, ended=True, system_events=[
        builders.function_cancelled(new, now_ms),
        builders.function_finished(new, now_ms, error=error),
    ])


def next_timer(state: dict[str, Any]) -> int | None:
    """The earliest time something must happen to this run without input (wake or deadline)."""
    if is_ended(state):
        return None
    times = [t for t in (state.get("wake_at"), state.get("deadline_at")) if t is not None]
    return min(times) if times else None
