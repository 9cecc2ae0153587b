"""Moving a ready run on (pure decisions over the owner's tables, no Kafka I/O of its own): its throttle, its
concurrency slots, the watermark gate, then its next invocation or its end; and giving slots back, which lets the
longest-waiting (highest-ranked) runs of those sets go on. Split from :mod:`.owner`, which calls in here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..kafka import metrics
from ..kafka.emitter import Emitter
from ..sdk.function import Function
from ..serde import INVOCATION
from . import state as st
from .priority import slot_rank
from .slots import Slots

if TYPE_CHECKING:
    from .owner import RunOwner


def advance(owner: RunOwner, state: dict[str, Any], fn: Function, p: int, out: Emitter, now: int) -> None:
    """A run waits at its point (``ready_at``): pass its throttle, take its slots, pass the gate, then dispatch
    or end it."""
    if fn.throttle is not None:
        released = owner.throttles.before_start(state, fn, p, out, now)
        if released is None:
            return  # held for its throttle (or at the gate, released)
        state = released
    if state.get("finishing") is None and fn.concurrency and state.get("held") != st.GATE:
        slots = owner.slots.get(p)
        if slots is None:
            slots = owner.slots[p] = Slots(owner.undo)
        blocked = slots.blocked_by(state["concurrency_keys"], [c.limit for c in fn.concurrency])
        if blocked is not None:
            slots.wait(blocked, state["run_id"], slot_rank(state, fn))
            owner._write(st.hold(state, st.CONCURRENCY, now), p, out)
            return
        slots.take(state["concurrency_keys"])
        if state.get("held") == st.CONCURRENCY:
            state = st.slot_acquired(state, now)
    if (fn.cancels or state["status"] == "Waiting") and owner.settings.gate_max_wait_ms > 0 \
            and st.needs_gate(state) and state.get("held") != st.GATE:
        owner.gates.add(p, state["ready_at"], state["run_id"])
        owner._write(st.hold(state, st.GATE, now), p, out)
        return
    if state.get("held") == st.GATE:
        metrics.GATE_WAIT.observe(max(0, now - state["ready_at"]) / 1000)
        state = st.gate_passed(state, now)
    if state["status"] == "Waiting":  # its timeout passed the gate and no event came: the step answers null
        owner.listening.unlisten_wait(state, out)
        timed_out = st.wait_timed_out(state, now).state
        assert timed_out is not None
        state = timed_out
    if state.get("finishing") is not None:
        owner.apply(st.finish(state, now), fn, p, out, now)
        return
    timeouts = fn.timeouts
    if state["status"] == "Queued":
        owner.fn_logger.info("run started", extra={"run_id": state["run_id"], "function_id": fn.id})
    state = st.dispatch(state, now, finish_timeout_ms=timeouts.finish_ms() if timeouts else None)
    owner._write(state, p, out)
    out.send(owner.invocations_topic, state["run_id"], INVOCATION, st.invocation(state, p, now))
    owner.arm(state, p)

def release_slots(owner: RunOwner, state: dict[str, Any], fn: Function | None, p: int, out: Emitter, now: int) -> None:
    """Give back the run's slots and let the longest-waiting runs of those sets go on."""
    if fn is None or not st.holds_slot(state):
        return
    slots = owner.slots.get(p)
    if slots is None:
        slots = owner.slots[p] = Slots(owner.undo)
    slots.give_back(state["concurrency_keys"])
    table = owner.tables[p]
    for key in state["concurrency_keys"]:
        while True:
            run_id = slots.next_waiting(key)
            if run_id is None:
                break
            waiting = table.get(run_id)
            if waiting is None or st.is_ended(waiting) or waiting.get("held") != st.CONCURRENCY:
                continue
            wfn = owner.registry.by_id.get(waiting["function_id"])
            if wfn is None:
                continue
            owner.advance(waiting, wfn, p, out, now)
            if owner.tables[p][run_id].get("held") == st.CONCURRENCY:
                break  # the set is full again (or another set blocks it, and it queued there)
