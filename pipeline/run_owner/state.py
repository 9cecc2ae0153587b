"""Run state transitions: pure functions from (state, input, now) to (new state, effects).

No Kafka here. The run owner turns a :class:`Transition` into output records, and the unit
tests check every transition without a broker. States are the plain dicts of the ``RunState``
Avro record, so nothing is converted on the hot path.

A run's life, as the owner drives it (user code never runs in the owner):

* ``ready``: the run reached a point it must pass (scheduled, a step done, a wake-up, a retry
  due, its handler returned). ``ready_at`` is that point in time.
* ``held``: it waits there for a concurrency slot (``held="concurrency"``) or for the cancel
  path to pass ``ready_at`` (``held="gate"``, the watermark gate).
* ``dispatched``: an invocation (number ``seq``) is with a worker (``inflight_at`` set).
* an outcome with that ``seq`` comes back: the run is ready again, sleeps, backs off, or is
  ``finishing`` (its handler ended) and passes one last gate before it ends.

* ``Waiting`` (``step.wait_for_event``): a listener joins it with the awaited events; a ``resume`` command
  answers the step with the event, or its timeout passes the gate (an event received before the timeout
  may still arrive) and answers it with null.

Statuses: Queued → Running ⇄ Sleeping | Waiting → Completed | Failed | Cancelled. An ended run never
changes again: cancelling it is a no-op, and so is any late outcome.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..protocol import invocations, sysevents
from ..protocol.errors import CANCELLED_ERROR
from ..protocol.ids import derived_ulid
from ..protocol.invocations import STEP_ERROR
from ..protocol.records import EventRecord, Invocation
from ..serde.models import ENDED_STATUSES

MAX_BACKOFF_MS = 5 * 60 * 1000
CONCURRENCY = "concurrency"
GATE = "gate"
THROTTLE = "throttle"


@dataclass
class Transition:
    """What one input did to one run. ``state`` is None when nothing changed (a no-op).

    ``ready`` says the run now waits at a point (``ready_at``) and the owner should move it on."""

    state: dict[str, Any] | None = None
    system_events: list[EventRecord] = field(default_factory=list)  # as they go on system-events
    user_events: list[dict[str, Any]] = field(default_factory=list)
    ended: bool = False
    ready: bool = False


def is_ended(state: dict[str, Any]) -> bool:
    return state["status"] in ENDED_STATUSES


def holds_slot(state: dict[str, Any]) -> bool:
    """Whether the run occupies its concurrency slots: in flight, or past the slot and waiting at the gate."""
    if is_ended(state) or not state.get("concurrency_keys"):
        return False
    return state.get("inflight_at") is not None or (state.get("held") == GATE and not state.get("finishing"))


def _bump(state: dict[str, Any], **changes: Any) -> dict[str, Any]:
    new = dict(state)
    new.update(changes)
    new["version"] = state.get("version", 0) + 1
    return new


def start(cmd: dict[str, Any], event_id: str, now_ms: int, *, start_timeout_ms: int | None,
          slot_keys: list[str] | None = None, singleton_key: str | None = None, batch: str | None = None) -> Transition:
    """Schedule a run: Queued and ready for its first invocation. ``batch``: a batch_events run's events (JSON)."""
    state = {
        "run_id": cmd["run_id"], "function_id": cmd["function_id"], "event_id": event_id, "event": cmd["event"],
        "status": "Queued", "attempt": 0, "steps": [], "output": None, "error": None,
        "received_at": cmd["received_at"] or now_ms, "queued_at": now_ms, "started_at": None, "ended_at": None,
        "wake_at": None, "pending_step": None, "deadline_at": now_ms + start_timeout_ms if start_timeout_ms else None,
        "cancel_reason": None, "cancel_source": None, "version": 1, "seq": 0, "inflight_at": None,
        "ready_at": now_ms, "held": None, "gate_wait_ms": 0, "finishing": None,
        "concurrency_keys": list(slot_keys or []), "waiting_for": None, "replay_of": cmd.get("source_id"),
        "singleton_key": singleton_key,
        "batch": batch,
    }
    return Transition(state=state, ready=True)


def waiting_listener(state: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(join key, spec) of the wait_for_event listener a Waiting run has registered, if any."""
    if not state.get("waiting_for"):
        return None
    spec = json.loads(state["waiting_for"])
    return (spec["join_key"], spec) if spec.get("join_key") else None


def needs_gate(state: dict[str, Any]) -> bool:
    """Every point but the first invocation passes the gate (a run's own trigger cannot cancel it)."""
    return state["seq"] > 0 or state.get("finishing") is not None


def hold(state: dict[str, Any], what: str, now_ms: int) -> dict[str, Any]:
    """The run waits at its point for ``what``. Waiting for a slot moves the point to when the slot is had."""
    return _bump(state, held=what)


def throttle_held(state: dict[str, Any], release_at: int | None) -> dict[str, Any]:
    """The run waits for its throttle; the head of its key's queue has its release time as ``wake_at``."""
    return _bump(state, held=THROTTLE, wake_at=release_at)


def throttle_released(state: dict[str, Any], now_ms: int) -> dict[str, Any]:
    """The throttle let the run start (a token used). Its point stays the release time, so a run that waited
    then passes the gate at that time, as a woken sleep does."""
    return _bump(state, held=None, wake_at=None, ready_at=state.get("ready_at") or now_ms)


def throttle_gated(state: dict[str, Any], now_ms: int) -> dict[str, Any]:
    """The throttle's release time came: the run first waits at the gate for the cancel path to pass it."""
    return _bump(state, held=GATE, wake_at=None, ready_at=now_ms)


def slot_acquired(state: dict[str, Any], now_ms: int) -> dict[str, Any]:
    """A run that waited for a slot reaches its point again now (the gate then covers the wait too)."""
    return _bump(state, held=None, ready_at=max(state["ready_at"] or now_ms, now_ms))


def gate_passed(state: dict[str, Any], now_ms: int) -> dict[str, Any]:
    """The cancel path passed ``ready_at``: count the wait and let the run go on."""
    waited = max(0, now_ms - (state["ready_at"] or now_ms))
    return _bump(state, held=None, gate_wait_ms=state.get("gate_wait_ms", 0) + waited)


def dispatch(state: dict[str, Any], now_ms: int, *, finish_timeout_ms: int | None) -> dict[str, Any]:
    """Hand invocation ``seq + 1`` to a worker. The first one makes the run Running (the finish timeout counts
    from here)."""
    changes: dict[str, Any] = {"seq": state["seq"] + 1, "inflight_at": now_ms, "ready_at": None, "held": None}
    if state["status"] == "Queued":
        changes.update(status="Running", started_at=now_ms,
                       deadline_at=now_ms + finish_timeout_ms if finish_timeout_ms else None)
    return _bump(state, **changes)


def invocation(state: dict[str, Any], owner_partition: int, now_ms: int) -> Invocation:
    """The Invocation record for the run's current ``seq`` (after :func:`dispatch`)."""
    return invocations.invocation(state["run_id"], state["function_id"], state["seq"], state["attempt"],
                                  owner_partition, state["event"], state["steps"], now_ms, state.get("batch"))


def is_current(state: dict[str, Any], outcome: dict[str, Any]) -> bool:
    """Whether an outcome answers the run's in-flight invocation. Late, duplicate and stale ones do not."""
    return (not is_ended(state) and state.get("inflight_at") is not None and outcome["seq"] == state["seq"]
            and outcome["attempt"] == state["attempt"])


def _landed(state: dict[str, Any], now_ms: int) -> dict[str, Any]:
    return _bump(state, inflight_at=None)


def apply_outcome(state: dict[str, Any], outcome: dict[str, Any], now_ms: int, *, retries: int,
                  backoff_ms: int) -> Transition:
    """Apply a current outcome (check :func:`is_current` first). The caller adds ``send`` events' records."""
    base = _landed(state, now_ms)
    kind = outcome["kind"]
    if kind == "step":
        tr = step_completed(base, outcome["step_id"], "run", outcome["output"], now_ms, outcome["started_at"])
        if outcome.get("final") is not None and tr.state is not None:  # the handler returned right after it
            tr.state.update(finishing="Completed", output=outcome["final"], error=None)
        elif outcome.get("sleep_step") is not None and outcome.get("sleep_ms") is not None and tr.state is not None:
            # the handler reached step.sleep right after it: the run sleeps now, as the next invocation would
            # have said, without that invocation. The sleep counts from now, when the step is stored (the next
            # invocation would have started later still); its wake-up passes the gate, as any sleep's does.
            tr = sleep(dict(tr.state, ready_at=None), outcome["sleep_step"], now_ms + max(0, outcome["sleep_ms"]),
                       now_ms)
        return tr
    if kind == "sleep":
        return sleep(base, outcome["step_id"], outcome["wake_at"], now_ms)
    if kind == "send":  # the step's output is the ids of the events it sent
        events = [user_event(state["run_id"], outcome["step_id"], i, ev, now_ms)
                  for i, ev in enumerate(json.loads(outcome["events"] or "[]"))]
        tr = step_completed(base, outcome["step_id"], "send_event", json.dumps([e["id"] for e in events]), now_ms,
                            outcome["started_at"])
        tr.user_events = events
        return tr
    if kind == "steps":
        return steps_completed(base, json.loads(outcome["output"] or "[]"), now_ms, outcome["started_at"],
                               retries=retries, backoff_ms=backoff_ms)
    if kind == "wait":
        return wait(base, outcome["step_id"], outcome["wait"] or "{}", outcome["wake_at"], outcome["finished_at"])
    if kind == "error":
        error = json.loads(outcome["error"]) if outcome["error"] else {}
        return failed_attempt(base, error, retries, now_ms, backoff_ms=backoff_ms, retriable=outcome["retriable"],
                              step_id=outcome["step_id"])
    return Transition(state=_bump(base, finishing="Completed", output=outcome["output"] or "null", error=None,
                                  ready_at=now_ms), ready=True)


def user_event(run_id: str, step_id: str | None, i: int, ev: dict[str, Any], now_ms: int) -> dict[str, Any]:
    """An event sent by ``step.send_event``, with a deterministic id, so a retried step sends no duplicates."""
    return {"id": ev.get("id") or derived_ulid(now_ms, "send", run_id, step_id or "", str(i)),
            "name": ev["name"], "data": ev.get("data") or {}, "user": ev.get("user") or {},
            "ts": ev.get("ts") or now_ms, "v": ev.get("v")}


def step_completed(state: dict[str, Any], step_id: str, op: str, output: str | None, now_ms: int,
                   started_at: int | None = None) -> Transition:
    """Store a completed step; the run is ready for its next invocation. Success resets the attempt counter."""
    steps = list(state["steps"])
    steps.append({"id": step_id, "op": op, "output": output, "completed_at": now_ms, "started_at": started_at})
    new = _bump(state, steps=steps, status="Running", wake_at=None, pending_step=None, attempt=0, ready_at=now_ms)
    return Transition(state=new, ready=True)


def steps_completed(state: dict[str, Any], entries: list[dict[str, Any]], now_ms: int, started_at: int | None, *,
                    retries: int, backoff_ms: int) -> Transition:
    """Steps that ran side by side (group.parallel): store every success; a failure then counts as a failed
    attempt of its step (a retry runs again only the steps not stored)."""
    steps = list(state["steps"])
    for entry in entries:
        if "error" not in entry:
            steps.append({"id": entry["id"], "op": "run", "output": entry["output"], "completed_at": now_ms,
                          "started_at": started_at})
    failed = [e for e in entries if "error" in e]
    if not failed:
        new = _bump(state, steps=steps, status="Running", wake_at=None, pending_step=None, attempt=0, ready_at=now_ms)
        return Transition(state=new, ready=True)
    first = failed[0]
    return failed_attempt(_bump(state, steps=steps), first["error"], retries, now_ms, backoff_ms=backoff_ms,
                          retriable=first.get("retriable", True), step_id=first["id"])


def sleep(state: dict[str, Any], step_id: str, wake_at: int, now_ms: int) -> Transition:
    """The run sleeps until ``wake_at``; the owner's timer wakes it (no thread is held)."""
    if wake_at <= now_ms:
        return step_completed(state, step_id, "sleep", None, now_ms)
    return Transition(state=_bump(state, status="Sleeping", wake_at=wake_at, pending_step=step_id))


WAIT_STEP = "wait_for_event"


def wait(state: dict[str, Any], step_id: str, spec_json: str, timeout_at: int, since: int) -> Transition:
    """The run waits for an event (``spec_json``: {event, if}) received from ``since`` until ``timeout_at``.
    The owner registers the listener and adds its join key (:func:`waiting_listener`)."""
    spec = json.loads(spec_json)
    spec.update(since=since, join_key=None)
    return Transition(state=_bump(state, status="Waiting", wake_at=timeout_at, pending_step=step_id,
                                  waiting_for=json.dumps(spec)))


def resume(state: dict[str, Any], step_id: str | None, event_json: str, now_ms: int) -> Transition:
    """An awaited event arrived: the wait step's output is the event. Anything else (the run no longer waits
    on that step: it timed out, was cancelled, or this is a duplicate) is a no-op."""
    if is_ended(state) or state["status"] != "Waiting" or step_id is None or state["pending_step"] != step_id:
        return Transition()
    return step_completed(_bump(state, waiting_for=None, held=None), step_id, WAIT_STEP, event_json, now_ms)


def wait_timed_out(state: dict[str, Any], now_ms: int) -> Transition:
    """The timeout passed (and the gate with it) with no event: the wait step's output is null."""
    tr = step_completed(_bump(state, waiting_for=None, held=None), state["pending_step"], WAIT_STEP, "null", now_ms)
    assert tr.state is not None
    tr.state["ready_at"] = state["ready_at"] or now_ms
    return tr


def wake(state: dict[str, Any], now_ms: int) -> Transition:
    """A timer fired: a sleeping run records its sleep step as done; a retry backoff is over. The point to pass
    is the wake time itself, so a cancel received before it is always honoured."""
    wake_at = state.get("wake_at")
    if is_ended(state) or wake_at is None or wake_at > now_ms:
        return Transition()
    if state["status"] == "Waiting":  # timed out: still Waiting until the gate has passed the timeout
        return Transition(state=_bump(state, wake_at=None, ready_at=wake_at), ready=True)
    if state["status"] == "Sleeping":
        tr = step_completed(_bump(state, wake_at=None), state["pending_step"], "sleep", None, now_ms)
        assert tr.state is not None
        tr.state["ready_at"] = wake_at
        return tr
    return Transition(state=_bump(state, wake_at=None, ready_at=wake_at), ready=True)


def failed_attempt(state: dict[str, Any], error: dict[str, Any], retries: int, now_ms: int, *,
                   backoff_ms: int, retriable: bool = True, step_id: str | None = None) -> Transition:
    """A step or the handler raised. Retry after an exponential backoff (or when a RetryAfterError said).

    With no retry left: a failed *step* is stored as failed for good, and the handler is invoked again so
    that ``step.run`` raises StepError where the user can catch it (as inngest-py); a failure of the
    handler itself finishes the run as Failed (the end passes the gate like any other point)."""
    attempt = state["attempt"] + 1
    if retriable and attempt <= retries:
        retry_at = error.get("retry_at")  # RetryAfterError: the user said when
        wake_at = max(int(retry_at), now_ms) if isinstance(retry_at, int) else \
            now_ms + min(backoff_ms * (2 ** (attempt - 1)), MAX_BACKOFF_MS)
        return Transition(state=_bump(state, attempt=attempt, wake_at=wake_at, error=json.dumps(error),
                                      status="Running"))
    if step_id is not None:
        return step_completed(_bump(state, error=None), step_id, STEP_ERROR, json.dumps(error), now_ms)
    return Transition(state=_bump(state, finishing="Failed", error=json.dumps(error), attempt=attempt,
                                  wake_at=None, ready_at=now_ms), ready=True)


def finish(state: dict[str, Any], now_ms: int) -> Transition:
    """End a finishing run as it said: Completed (``function.finished`` with the result) or Failed
    (``function.failed`` and ``function.finished``)."""
    status = state["finishing"]
    new = _bump(state, status=status, finishing=None, ended_at=now_ms, wake_at=None, deadline_at=None,
                ready_at=None, held=None, inflight_at=None)
    if status == "Completed":
        return Transition(state=new, ended=True, system_events=[
            sysevents.function_finished(new, now_ms, result_json=new["output"] or "null")])
    error = json.loads(new["error"] or "{}")
    return Transition(state=new, ended=True, system_events=[
        sysevents.function_failed(new, error, now_ms), sysevents.function_finished(new, now_ms, error=error)])


def cancel(state: dict[str, Any], reason: str, source_id: str | None, now_ms: int) -> Transition:
    """Cancel an active run at once, whatever it is doing: sleeping, waiting, or with a step in flight (that
    step may finish, but its outcome starts nothing). An ended run is left alone: no second system event.
    ``held`` keeps what the run was waiting for, so its state says a cancel caught it at the gate."""
    if is_ended(state):
        return Transition()
    error = dict(CANCELLED_ERROR)
    new = _bump(state, status="Cancelled", ended_at=now_ms, wake_at=None, pending_step=None, deadline_at=None,
                error=json.dumps(error), cancel_reason=reason, cancel_source=source_id, inflight_at=None,
                ready_at=None, finishing=None)
    return Transition(state=new, ended=True, system_events=[
        sysevents.function_cancelled(new, now_ms),
        sysevents.function_finished(new, now_ms, error=error),
    ])


def skip(state: dict[str, Any], active_run_id: str, now_ms: int) -> Transition:
    """A new run of a singleton function while another run of its key is active (``mode="skip"``): recorded as
    Skipped, never started, with the active run as its ``cancel_source`` (no system event: nothing ran)."""
    new = _bump(state, status="Skipped", ended_at=now_ms, ready_at=None, held=None, deadline_at=None,
                cancel_reason="singleton", cancel_source=active_run_id)
    return Transition(state=new, ended=True)


def next_timer(state: dict[str, Any]) -> int | None:
    """The earliest time something must happen to this run without input (wake or deadline)."""
    if is_ended(state):
        return None
    times = [t for t in (state.get("wake_at"), state.get("deadline_at")) if t is not None]
    return min(times) if times else None
