"""Priority (pure): the clamped value, and the concurrency queue ordered by rank (with its undo)."""

from __future__ import annotations

import json

import pipeline
from pipeline.protocol.commands import start_command
from pipeline.run_owner import state as st
from pipeline.run_owner.priority import slot_rank
from pipeline.run_owner.slots import Slots
from pipeline.run_owner.undo import UndoLog


def _fn(priority: str | None = "event.data.p") -> pipeline.Function:
    app = pipeline.Inngest(app_id="u")
    return app.create_function(fn_id="c", trigger=pipeline.TriggerEvent(event="a/b"),
                               concurrency=[pipeline.Concurrency(limit=1)],
                               priority=pipeline.Priority(run=priority) if priority else None)(lambda ctx: None)


def _run(run_id: str, at: int, p: object) -> dict:
    event = {"id": run_id, "name": "a/b", "data": {"p": p}, "ts": 0, "user": {}}
    tr = st.start(start_command(run_id, "u-c", json.dumps(event), at, at), run_id, at, start_timeout_ms=None)
    assert tr.state is not None
    return tr.state


def test_the_value_is_clamped_and_anything_but_a_number_is_zero() -> None:
    fn = _fn()
    assert [fn.priority_s({"data": {"p": v}}) for v in (5, -5, 601, -10_000, 2.7, "9", True, None)] == \
        [5, -5, 600, -600, 2, 0, 0, 0]
    assert fn.priority_s({"data": {}}) == 0 and _fn(None).priority_s({"data": {"p": 5}}) == 0


def test_a_ranked_run_goes_ahead_of_older_waiting_runs_and_equal_ranks_keep_arrival_order() -> None:
    fn, slots = _fn(), Slots()
    for run in (_run("R1", 1_000, 0), _run("R2", 2_000, 0), _run("R3", 3_000, 600), _run("R4", 3_000, 0),
                _run("R5", 4_000, -2)):
        slots.wait("k", run["run_id"], slot_rank(run, fn))
    assert list(slots.waiting["k"]) == ["R3", "R1", "R2", "R4", "R5"]
    assert [slots.next_waiting("k") for _ in range(5)] == ["R3", "R1", "R2", "R4", "R5"]
    assert slots.ranks == {}


def test_without_priority_the_queue_is_first_come_first_served() -> None:
    fn, slots = _fn(None), Slots()
    for run in (_run("R1", 5_000, 600), _run("R2", 1_000, 600)):
        slots.wait("k", run["run_id"], slot_rank(run, fn))
    assert list(slots.waiting["k"]) == ["R1", "R2"]


def test_a_failed_record_puts_the_queue_and_ranks_back() -> None:
    fn, undo = _fn(), UndoLog()
    slots = Slots(undo)
    slots.wait("k", "R1", slot_rank(_run("R1", 1_000, 0), fn))
    slots.wait("k", "R2", slot_rank(_run("R2", 2_000, 0), fn))
    undo.begin()
    before = (list(slots.waiting["k"]), dict(slots.ranks))
    slots.wait("k", "R3", slot_rank(_run("R3", 3_000, 600), fn))
    assert slots.next_waiting("k") == "R3"
    slots.forget("R2")
    undo.rollback()
    assert (list(slots.waiting["k"]), dict(slots.ranks)) == before
