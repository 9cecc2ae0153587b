"""The API's run table applied record by record (no broker, no thread): the indexes it keeps agree with the states
applied, whether the previous state of a run comes from its recent summaries or from the store."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pipeline.api import tables
from pipeline.api.tables import RunTable
from pipeline.kafka.store import Store
from pipeline.protocol.commands import start_command
from pipeline.run_owner import state as st
from pipeline.serde import RUN_STATE, Serde

from .fakes import store_dir

serde = Serde()


def new_table() -> RunTable:
    return RunTable("127.0.0.1:1", "runs", store=Store(store_dir("api-runs-") / "runs"), serde=serde)


def states(i: int, fn: str = "f") -> list[dict[str, Any]]:
    """A run's states as the owner writes them: queued, running, sleeping, cancelled in bulk."""
    event = {"data": {"n": i}, "id": f"EV{i}", "name": "e", "ts": 1, "user": {}}
    cmd = start_command(f"R{i:04d}", fn, json.dumps(event), 9_000, 10_000 + i)
    queued = st.start(cmd, f"EV{i}", 10_000 + i, start_timeout_ms=None).state
    assert queued is not None
    running = st.dispatch(queued, 11_000, finish_timeout_ms=None)
    sleeping = st.sleep(running, "nap", 10**12, 12_000).state
    assert sleeping is not None
    cancelled = st.cancel(sleeping, "bulk", "BULK1", 13_000).state
    assert cancelled is not None
    return [queued, running, sleeping, cancelled]


def apply_all(table: RunTable, runs: list[list[dict[str, Any]]], *, commit_each: bool) -> None:
    for step in range(4):
        for run in runs:
            table.apply(run[step]["run_id"], serde.encode(RUN_STATE, run[step]), 2)
            if commit_each:
                table.store.commit()
    table.store.commit()


@pytest.mark.parametrize("recent_runs", [0, 1_000])
def test_states_move_runs_between_views_and_counts(monkeypatch: pytest.MonkeyPatch, recent_runs: int) -> None:
    """With no summaries kept (every previous state read from the store) and with them, the same table results."""
    monkeypatch.setattr(tables, "RECENT_RUNS", recent_runs)
    table = new_table()
    runs = [states(i, "f" if i % 2 else "g") for i in range(6)]
    apply_all(table, runs, commit_each=recent_runs == 0)
    assert table.function_counts() == {"f": 3, "g": 3}
    assert table.page(None, "Sleeping", limit=10)[0] == []
    assert [s["run_id"] for s in table.page("f", "Cancelled", limit=10)[0]] == ["R0005", "R0003", "R0001"]
    assert len(table.page(None, None, limit=10)[0]) == 6
    assert table.cancelled_by("BULK1") == 6
    assert [s["status"] for s in table.for_event("EV4")] == ["Cancelled"]
    assert table.partitions["R0004"] == 2


def test_an_older_state_never_overwrites_a_newer_one_and_a_tombstone_forgets() -> None:
    table = new_table()
    run = states(1)
    for state in (run[0], run[2], run[1]):  # the running state arrives late (a zombie writer's)
        table.apply("R0001", serde.encode(RUN_STATE, state), 0)
    assert table.get("R0001")["status"] == "Sleeping"  # type: ignore[index]
    assert [s["run_id"] for s in table.page(None, "Sleeping", limit=5)[0]] == ["R0001"]
    assert table.page(None, "Running", limit=5)[0] == []
    table.apply("R0001", None, 0)
    table.store.commit()
    assert table.get("R0001") is None and table.function_counts() == {}
    assert table.page(None, None, limit=5)[0] == [] and table.for_event("EV1") == []


def test_a_record_that_fails_midway_leaves_no_summary_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    """The summary is taken out before a record applies and put back after: a failure in between means the next
    state of that run is compared with the store, never with a summary that may not match it."""
    table = new_table()
    run = states(1)
    table.apply("R0001", serde.encode(RUN_STATE, run[0]), 0)

    def broken(old: dict[str, Any], new: dict[str, Any]) -> None:
        raise ValueError("midway")

    monkeypatch.setattr(table.index, "move", broken)
    with pytest.raises(ValueError):
        table.apply("R0001", serde.encode(RUN_STATE, run[1]), 0)
    assert "R0001" not in table._recent
