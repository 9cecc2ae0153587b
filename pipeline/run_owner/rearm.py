"""Derive a restored partition's timers, slot counts and queues and gate waits (the run owner's assignment; they
are kept in memory only).

Read from the run table's indexes, not from every run (:mod:`.table`): the timers due before the owner's timer
horizon and the few runs holding slots or waiting for one or at the gate. A million sleeping runs are never read
before the first command."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import state as st
from .priority import slot_rank
from .slots import Slots
from .throttle import waits_for_token
from .undo import TIMER_HORIZON_MS

if TYPE_CHECKING:
    from .owner import RunOwner


def rearm(owner: RunOwner, p: int, now: int) -> None:
    """Derive timers, slot counts, slot queues and gate waits of partition p from its run table's indexes."""
    owner.gates.drop_partition(p)
    slots = owner.slots.get(p)
    if slots is None:
        slots = owner.slots[p] = Slots(owner.undo)
    table = owner.tables[p]
    timers = owner.timers
    timers.horizon = max(timers.horizon, now + TIMER_HORIZON_MS)
    timers.load((at, run_id, p) for at, run_id in table.timers(0, timers.horizon))
    waiting = []
    throttled = []
    for state in table.held():
        if waits_for_token(state):
            throttled.append(state)
        if st.holds_slot(state):
            slots.take(state["concurrency_keys"])
        if state.get("held") == st.CONCURRENCY:
            waiting.append(state)
        elif state.get("held") == st.GATE:
            owner.gates.add(p, state["ready_at"], state["run_id"])
    owner.throttles.rebuild(p, throttled)
    for state in sorted(waiting, key=lambda s: (s["ready_at"], s["queued_at"], s["run_id"])):
        fn = owner.registry.by_id.get(state["function_id"])
        if fn is not None:
            blocked = slots.blocked_by(state["concurrency_keys"], [c.limit for c in fn.concurrency])
            slots.wait(blocked or state["concurrency_keys"][0], state["run_id"], slot_rank(state, fn))
