"""Derive a restored partition's timers, slot counts and queues and gate waits from its run states (the run owner's
assignment; they are kept in memory only)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import state as st

if TYPE_CHECKING:
    from .owner import RunOwner


def rearm(owner: RunOwner, p: int) -> None:
    """Derive timers, slot counts, slot queues and gate waits of partition p from its run states."""
    owner.gates.drop_partition(p)
    slots = owner.slots[p]
    waiting = []
    for state in owner.tables[p].values():
        if st.is_ended(state):
            continue
        owner.arm(state, p)
        if st.holds_slot(state):
            slots.take(state["concurrency_keys"])
        if state.get("held") == st.CONCURRENCY:
            waiting.append(state)
        elif state.get("held") == st.GATE:
            owner.gates.add(p, state["ready_at"], state["run_id"])
    for state in sorted(waiting, key=lambda s: (s["ready_at"], s["queued_at"], s["run_id"])):
        fn = owner.registry.by_id.get(state["function_id"])
        if fn is not None:
            blocked = slots.blocked_by(state["concurrency_keys"], [c.limit for c in fn.concurrency])
            slots.wait(blocked or state["concurrency_keys"][0], state["run_id"])
