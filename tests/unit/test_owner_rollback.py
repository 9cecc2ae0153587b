"""A record (or tick) the run owner fails on is undone whole: after the loop's ``discard()`` the owner's memory is
what it was before the record, its table and also its slot counts and queues, timers, gate waits and cron clocks.
Otherwise a record that failed after it released a slot leaves the run it let through unqueued (its state is put
back, waiting for the slot, but no queue holds it any more) until the next rebalance. No broker: the owner is fed
records directly, as the loop would, and made to fail after its changes."""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import pytest

import pipeline
from pipeline.config import Settings
from pipeline.kafka.emitter import Emitter
from pipeline.run_owner.gate import GateBook
from pipeline.run_owner.owner import RunOwner
from pipeline.run_owner.rearm import rearm
from pipeline.run_owner.slots import Slots
from pipeline.run_owner.undo import UndoLog
from pipeline.sdk.app import Registry
from pipeline.serde import RUN_COMMAND, STEP_OUTCOME, Serde

from .fakes import FakeMessage, run_table

client = pipeline.Inngest(app_id="unit-rollback")
SERDE = Serde()


@client.create_function(fn_id="one-at-a-time", trigger=pipeline.TriggerEvent(event="r/one"),
                        concurrency=[pipeline.Concurrency(limit=1)])
def one_at_a_time(ctx: pipeline.ContextSync) -> str:
    ctx.step.sleep("nap", 60)
    return ctx.step.run("s", lambda: "ok")


def _start(run_id: str) -> FakeMessage:
    event = {"id": f"e-{run_id}", "name": "r/one", "data": {}, "user": {}, "ts": 1_700_000_000_000}
    return FakeMessage(SERDE.encode(RUN_COMMAND, {
        "kind": "start", "run_id": run_id, "function_id": one_at_a_time.id, "ts": 1, "event": json.dumps(event),
        "received_at": 1, "reason": None, "source_id": None, "attempt": 0, "step_id": None}))


def _sleep_outcome(state: dict[str, Any], wake_at: int) -> FakeMessage:
    return FakeMessage(SERDE.encode(STEP_OUTCOME, {
        "run_id": state["run_id"], "function_id": one_at_a_time.id, "seq": state["seq"], "attempt": state["attempt"],
        "kind": "sleep", "step_id": "nap", "output": None, "wake_at": wake_at, "events": None, "error": None,
        "retriable": True, "started_at": 1, "finished_at": 2, "worker": "w", "wait": None, "final": None,
        "sleep_step": None, "sleep_ms": None}))


def _owner() -> tuple[RunOwner, Emitter]:
    settings = Settings(gate_max_wait_ms=0)
    owner = RunOwner(Registry([client]), settings)
    owner.tables[0] = run_table()
    rearm(owner, 0, time.time_ns() // 1_000_000)  # as an assignment does: the timer horizon
    return owner, Emitter(SERDE, settings)


def _memory(owner: RunOwner) -> dict[str, Any]:
    """Everything a record may change in the owner's memory, as plain values."""
    return copy.deepcopy({
        "tables": {p: dict(table) for p, table in owner.tables.items()},
        "indexes": {p: list(table.store.scan(b"h", b"u")) for p, table in owner.tables.items()},
        "slots": {p: (dict(s.used), {k: list(q) for k, q in s.waiting.items()}) for p, s in owner.slots.items()},
        "timers": sorted(owner.timers.heap),
        "gates": ({p: sorted(h) for p, h in owner.gates.waiting.items()}, dict(owner.gates._points)),
        "dirty": dict(owner.writes.dirty),
    })


def _fail_after(owner: RunOwner, run_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The owner raises once it has applied a transition of ``run_id``: everything before is done."""
    real = owner.apply

    def apply(tr: Any, *args: Any, **kwargs: Any) -> None:
        real(tr, *args, **kwargs)
        if tr.state is not None and tr.state["run_id"] == run_id:
            raise RuntimeError("failed after its changes")

    monkeypatch.setattr(owner, "apply", apply)


def _two_runs_one_slot() -> tuple[RunOwner, Emitter]:
    """Run a holds the one slot, in flight; run b waits for it."""
    owner, out = _owner()
    owner.process(_start("a"), out)
    owner.process(_start("b"), out)
    owner.end_batch(out)
    assert owner.tables[0]["a"]["inflight_at"] is not None and owner.tables[0]["b"]["held"] == "concurrency"
    assert [list(q) for q in owner.slots[0].waiting.values()] == [["b"]]
    return owner, out


def test_a_record_that_fails_after_releasing_a_slot_leaves_slots_queues_and_timers_as_they_were(
        monkeypatch: pytest.MonkeyPatch) -> None:
    owner, out = _two_runs_one_slot()
    before = _memory(owner)
    # a's step sleeps: a gives its slot back, b takes it and is dispatched, a's wake-up is armed; then it fails
    _fail_after(owner, "a", monkeypatch)
    with pytest.raises(RuntimeError):
        owner.process(_sleep_outcome(owner.tables[0]["a"], wake_at=10**13), out)
    assert _memory(owner) != before  # it did change all that before it failed
    out.clear()
    owner.discard()  # what the loop does when it dead-letters the record
    assert _memory(owner) == before
    # and b still gets the slot when a's sleep lands for real
    monkeypatch.undo()
    owner.process(_sleep_outcome(owner.tables[0]["a"], wake_at=10**13), out)
    assert owner.tables[0]["b"]["inflight_at"] is not None and owner.slots[0].waiting == {}


def test_a_tick_that_fails_after_waking_a_run_leaves_its_timer_and_slots_as_they_were(
        monkeypatch: pytest.MonkeyPatch) -> None:
    owner, out = _two_runs_one_slot()
    wake_at = time.time_ns() // 1_000_000 + 30_000  # within the timer horizon: in memory
    owner.process(_sleep_outcome(owner.tables[0]["a"], wake_at=wake_at), out)  # a sleeps 30 s; b has the slot
    owner.end_batch(out)
    assert (wake_at, "a", 0) in owner.timers.heap
    before = _memory(owner)
    _fail_after(owner, "a", monkeypatch)
    with pytest.raises(RuntimeError):
        owner.tick(out, wake_at + 1)  # a's timer pops, a wakes and queues for the slot b holds; then it fails
    assert _memory(owner) != before
    out.clear()
    owner.discard()
    assert _memory(owner) == before  # the timer is back: a still wakes at the next tick


def test_a_timer_past_the_horizon_waits_in_the_table_index_until_the_horizon_nears() -> None:
    owner, out = _two_runs_one_slot()
    now = time.time_ns() // 1_000_000
    wake_at = now + 5 * 60_000  # five minutes: past the horizon, in the store's timer index only
    owner.process(_sleep_outcome(owner.tables[0]["a"], wake_at=wake_at), out)
    owner.end_batch(out)
    assert all(run_id != "a" for _, run_id, _ in owner.timers.heap)
    assert list(owner.tables[0].timers(0, wake_at + 1)) == [(wake_at, "a")]
    owner.tick(out, wake_at - 30_000)  # the horizon nears: the timer is loaded
    assert (wake_at, "a", 0) in owner.timers.heap
    owner.tick(out, wake_at + 1)
    owner.end_batch(out)
    assert owner.tables[0]["a"]["wake_at"] is None and list(owner.tables[0].timers(0, 2**62)) == []


def test_slot_changes_undo_exactly() -> None:
    undo = UndoLog()
    slots = Slots(undo)
    slots.take(["k", "j"])
    slots.wait("k", "r1")
    slots.wait("k", "r2")
    slots.wait("j", "r3")
    before = (dict(slots.used), {k: list(q) for k, q in slots.waiting.items()})
    undo.begin()
    slots.give_back(["k", "j"])
    assert slots.next_waiting("k") == "r1"
    slots.take(["k"])
    slots.forget("r3")
    slots.wait("k", "r4")
    undo.rollback()
    assert (dict(slots.used), {k: list(q) for k, q in slots.waiting.items()}) == before
    assert len(undo) == 0


def test_gate_changes_undo_exactly() -> None:
    undo = UndoLog()
    gates = GateBook(max_wait_ms=1_000, undo=undo)
    gates.add(0, 100, "r1")
    gates.add(0, 200, "r2")
    undo.begin()
    before = ({p: sorted(h) for p, h in gates.waiting.items()}, dict(gates._points))
    gates.add(0, 300, "r3")
    gates.add(0, 400, "r1")  # back at a later point
    assert [r for _, r, _ in gates.due({}, now=1_250)] == ["r2"]  # r2 timed out; r1's first entry is stale
    undo.rollback()
    assert ({p: sorted(h) for p, h in gates.waiting.items()}, dict(gates._points)) == before
