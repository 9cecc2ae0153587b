"""Singleton (pure): the definition, the owner key, the skip transition and the run table's singleton index."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

import pipeline
from pipeline.expr import EvalFailure
from pipeline.protocol.commands import start_command
from pipeline.run_owner import state as st
from pipeline.serde import RUN_STATE, Serde

from .fakes import run_table

EVENT = {"data": {"k": "acct-1"}, "id": "01EV", "name": "a/b", "ts": 1000, "user": {}}


def _fn(mode: str = "cancel", key: str | None = "event.data.k") -> pipeline.Function:
    app = pipeline.Inngest(app_id="u")
    return app.create_function(fn_id="one", trigger=pipeline.TriggerEvent(event="a/b"),
                               singleton=pipeline.Singleton(key=key, mode=mode))(lambda ctx: None)


def _started(run_id: str, singleton_key: str | None) -> dict:
    cmd = start_command(run_id, "u-one", json.dumps(EVENT), 9_000, 10_000)
    tr = st.start(cmd, EVENT["id"], 10_000, start_timeout_ms=None, singleton_key=singleton_key)
    assert tr.state is not None
    return tr.state


def test_mode_is_skip_or_cancel() -> None:
    with pytest.raises(ValidationError):
        pipeline.Singleton(key=None, mode="queue")  # type: ignore[arg-type]


def test_the_owner_key_is_the_singleton_key_and_a_failing_key_raises() -> None:
    fn = _fn()
    assert fn.owner_key(EVENT) == 'u-one\x1f"acct-1"' == fn.singleton.key_of(fn.id, EVENT)  # type: ignore[union-attr]
    assert _fn(key=None).owner_key(EVENT) == "u-one"
    with pytest.raises(EvalFailure):
        fn.owner_key({**EVENT, "data": {}})


def test_skip_ends_the_run_unstarted_with_no_system_event() -> None:
    tr = st.skip(_started("R2", "k"), "R1", 11_000)
    assert tr.ended and not tr.system_events and tr.state is not None
    assert (tr.state["status"], tr.state["cancel_source"], tr.state["started_at"]) == ("Skipped", "R1", None)
    assert st.is_ended(tr.state)
    assert Serde().decode_as(RUN_STATE, Serde().encode(RUN_STATE, tr.state))["status"] == "Skipped"


def test_the_run_table_indexes_the_active_runs_of_each_key() -> None:
    table = run_table()
    a, b, other = _started("RA", "k"), _started("RB", "k"), _started("RC", "k2")
    for s in (a, b, other):
        table[s["run_id"]] = s
    assert sorted(table.singleton_runs("k")) == ["RA", "RB"] and table.singleton_runs("k2") == ["RC"]
    cancelled = st.cancel(a, "singleton", "RB", 11_000).state
    assert cancelled is not None
    table["RA"] = cancelled
    assert table.singleton_runs("k") == ["RB"]
    table["RB"] = st.skip(b, "RA", 11_000).state  # type: ignore[assignment]
    assert table.singleton_runs("k") == []
    assert _started("RD", None)["singleton_key"] is None
