"""Debounce and batch rules (pure), and their configuration: inngest-py's names, units and Inngest's ranges."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest

import pipeline
from pipeline.protocol.pending import decode_pending, encode_pending
from pipeline.run_owner.batches import batch_add
from pipeline.run_owner.debounce import debounce_add


def _cmd(run: str, received: int, ts: int | None = None, size: int = 0) -> dict:
    event = {"id": run, "name": "x", "data": {"pad": "p" * size}, "ts": received if ts is None else ts}
    return {"kind": "start", "run_id": f"r-{run}", "function_id": "a-f", "event": json.dumps(event),
            "received_at": received, "source_id": None, "ts": received}


def test_each_event_restarts_the_period_and_the_timeout_caps_it_from_the_first() -> None:
    rec = debounce_add(None, _cmd("e1", 1000), "", 5000, 8000, 1000)
    assert rec is not None and rec["deadline_at"] == 6000 and rec["run_id"] == "r-e1"
    rec = debounce_add(rec, _cmd("e2", 4000), "", 5000, 8000, 4000)
    assert rec is not None and rec["deadline_at"] == 9000 and rec["run_id"] == "r-e2"
    rec = debounce_add(rec, _cmd("e3", 8500), "", 5000, 8000, 8500)
    assert rec is not None and rec["deadline_at"] == 9000 and rec["run_id"] == "r-e3"  # capped: first + timeout


def test_an_older_ts_neither_replaces_nor_extends_and_a_replay_changes_nothing() -> None:
    rec = debounce_add(None, _cmd("e1", 1000, ts=50), "", 5000, None, 1000)
    assert debounce_add(rec, _cmd("old", 2000, ts=10), "", 5000, None, 2000) is None
    assert debounce_add(rec, _cmd("e1", 1000, ts=50), "", 5000, None, 3000) is None
    tie = debounce_add(rec, _cmd("tie", 2000, ts=50), "", 5000, None, 2000)
    assert tie is not None and tie["run_id"] == "r-tie" and tie["deadline_at"] == 7000


def test_the_timeout_counts_from_the_first_received_even_when_it_reaches_the_owner_second() -> None:
    rec = debounce_add(None, _cmd("e2", 1800, ts=2), "", 2000, 3000, 1800)  # the newer event arrived first
    assert rec is not None and rec["deadline_at"] == 3800
    rec = debounce_add(rec, _cmd("e1", 1000, ts=1), "", 2000, 3000, 1900)  # received earlier, older ts
    assert rec is not None and rec["run_id"] == "r-e2" and rec["first_received_at"] == 1000
    assert rec["deadline_at"] == 3800  # the period from e2 still comes first
    rec = debounce_add(rec, _cmd("e3", 3500, ts=3), "", 2000, 3000, 3500)
    assert rec is not None and rec["run_id"] == "r-e3" and rec["deadline_at"] == 4000  # capped: e1 + timeout


def test_an_event_received_at_or_after_the_deadline_waits_for_the_next_debounce() -> None:
    rec = debounce_add(None, _cmd("e1", 1000), "", 5000, None, 1000)
    late = debounce_add(rec, _cmd("late", 6000), "", 5000, None, 7000)
    assert late is not None and late["run_id"] == "r-e1" and [c["run_id"] for c in late["later"]] == ["r-late"]
    assert debounce_add(late, _cmd("late", 6000), "", 5000, None, 7000) is None  # replayed: no second copy


def test_a_batch_starts_when_full_and_its_timeout_does_not_slide() -> None:
    rec, started = batch_add(None, _cmd("e1", 1000), "", 3, 2000, 10_000, 1000)
    assert rec is not None and rec["deadline_at"] == 3000 and not started
    rec, _ = batch_add(rec, _cmd("e2", 2500), "", 3, 2000, 10_000, 2500)
    assert rec is not None and rec["deadline_at"] == 3000
    assert batch_add(rec, _cmd("e2", 2500), "", 3, 2000, 10_000, 2600) == (None, [])  # a replay
    kept, started = batch_add(rec, _cmd("e3", 2900), "", 3, 2000, 10_000, 2900)
    assert kept is None and [c["run_id"] for c in started[0]["commands"]] == ["r-e1", "r-e2", "r-e3"]


def test_a_batch_that_would_pass_the_record_budget_starts_with_what_it_has() -> None:
    rec, _ = batch_add(None, _cmd("e1", 1000, size=600), "", 100, 2000, 1000, 1000)
    kept, started = batch_add(rec, _cmd("e2", 1100, size=600), "", 100, 2000, 1000, 1100)
    assert [c["run_id"] for c in started[0]["commands"]] == ["r-e1"]
    assert kept is not None and [c["run_id"] for c in kept["commands"]] == ["r-e2"]


def test_pending_records_round_trip_and_garbage_is_refused() -> None:
    rec = debounce_add(None, _cmd("e1", 1000), '"k"', 5000, None, 1000)
    assert rec is not None and decode_pending(encode_pending(rec)) == rec
    with pytest.raises(ValueError):
        decode_pending(b'{"kind": "other", "commands": []}')


def test_config_names_units_and_ranges_are_inngest_pys() -> None:
    d = pipeline.Debounce(period=2000, key="event.data.id", timeout=datetime.timedelta(minutes=1))
    assert d.period_ms() == 2000 and d.timeout_ms() == 60_000
    for bad in (999, datetime.timedelta(days=7, seconds=1)):
        with pytest.raises(ValueError, match="between 1 s and 7 days"):
            pipeline.Debounce(period=bad)
    with pytest.raises(ValueError):
        pipeline.Debounce(period=1.5)  # a float is refused, not guessed at
    assert pipeline.Batch(max_size=100, timeout=5000).timeout_ms() == 5000
    with pytest.raises(ValueError):
        pipeline.Batch(max_size=1, timeout=5000)  # Inngest: a batch of 1 is no batch
    with pytest.raises(ValueError):
        pipeline.Batch(max_size=5, timeout=500)
    with pytest.raises(ValueError):
        pipeline.Batch(max_size=100_000, timeout=5000)


def test_batches_refuse_what_inngest_refuses_and_keys_compile_at_load() -> None:
    client = pipeline.Inngest(app_id="a")
    trig = pipeline.TriggerEvent(event="x")
    batch = pipeline.Batch(max_size=5, timeout=5000)
    with pytest.raises(pipeline.DefinitionError, match="cannot be combined with cancel"):
        client.create_function(fn_id="f", trigger=trig, batch_events=batch,
                               cancel=pipeline.Cancel(event="y"))(lambda ctx: None)
    with pytest.raises(pipeline.DefinitionError, match="cannot be combined with debounce"):
        client.create_function(fn_id="g", trigger=trig, batch_events=batch,
                               debounce=pipeline.Debounce(period=2000))(lambda ctx: None)
    with pytest.raises(pipeline.DefinitionError, match="cannot be combined with priority"):
        client.create_function(fn_id="h", trigger=trig, batch_events=batch, priority=object())
    with pytest.raises(pipeline.DefinitionError, match="debounce key"):
        client.create_function(fn_id="i", trigger=trig,
                               debounce=pipeline.Debounce(period=2000, key="event.data.("))(lambda ctx: None)


def test_flow_keys_route_to_one_owner_and_a_failing_key_raises() -> None:
    client = pipeline.Inngest(app_id="a")
    fn = client.create_function(fn_id="f", trigger=pipeline.TriggerEvent(event="x"),
                                debounce=pipeline.Debounce(period=2000, key="event.data.account"))(lambda ctx: None)
    assert fn.owner_key({"data": {"account": "acme"}}) == 'a-f\x1f"acme"'
    with pytest.raises(Exception, match="account"):
        fn.owner_key({"data": {}})
    plain = client.create_function(fn_id="g", trigger=pipeline.TriggerEvent(event="x"),
                                   batch_events=pipeline.Batch(max_size=5, timeout=5000))(lambda ctx: None)
    assert plain.owner_key({"data": {}}) == "a-g"
    mixed = client.create_function(fn_id="h", trigger=pipeline.TriggerEvent(event="x"),
                                   concurrency=pipeline.Concurrency(limit=1, key="event.data.a"),
                                   debounce=pipeline.Debounce(period=2000, key="event.data.b"))(lambda ctx: None)
    assert mixed.owner_key({"data": {"a": 1, "b": 2}}) == "a-h"


def test_the_pending_table_writes_each_record_once_per_flush_and_forgets_an_aborted_one(tmp_path: Path) -> None:
    from pipeline.kafka.store import Store
    from pipeline.run_owner.pending import PendingTable

    table = PendingTable(Store(tmp_path / "p"))
    rec = None
    for i in range(5):  # five events of one batch between two ends of batch: one changelog record
        rec, _ = batch_add(rec, _cmd(f"e{i}", 1000 + i), "", 10, 2000, 10_000, 1000)
        table.put("a-f\x1f", rec)
    assert table.key_of_run("r-e0") == "a-f\x1f" and table.get("a-f\x1f") == rec
    (written,) = table.flush()
    assert written[0] == "a-f\x1f" and written[1] is not None and len(decode_pending(written[1])["commands"]) == 5
    table.commit(1)
    table.put("a-f\x1f", None)
    assert table.get("a-f\x1f") is None and table.key_of_run("r-e0") is None
    table.abort()  # the transaction aborted: the record is back
    assert table.get("a-f\x1f") == rec and [k for k, _ in table.records()] == ["a-f\x1f"]
    table.put("a-f\x1f", None)
    assert table.flush() == [("a-f\x1f", None)]
    table.commit(2)
    assert table.get("a-f\x1f") is None and table.key_of_run("r-e0") is None and not list(table.records())
    table.close()


def test_a_key_has_one_timer_however_many_events_extend_it_and_it_fires_at_the_last_deadline(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from pipeline.config import Settings
    from pipeline.kafka.store import Store
    from pipeline.run_owner.pending import PendingRuns, PendingTable
    from pipeline.run_owner.undo import UndoLog

    client = pipeline.Inngest(app_id="a")
    fn = client.create_function(fn_id="f", trigger=pipeline.TriggerEvent(event="x"),
                                debounce=pipeline.Debounce(period=5000))(lambda ctx: None)
    started: list[str] = []
    owner = SimpleNamespace(settings=Settings(gate_max_wait_ms=0), commands_topic="run-commands", undo=UndoLog(),
                            registry=SimpleNamespace(by_id={fn.id: fn}),
                            start_run=lambda cmd, fn, p, out, now, batch=None: started.append(cmd["run_id"]))
    pending = PendingRuns(owner)  # type: ignore[arg-type]
    pending.tables["debounce"][0] = PendingTable(Store(tmp_path / "d"))
    for i in range(1000):
        cmd = {**_cmd(f"e{i}", 1000 + i), "function_id": fn.id}
        assert pending.on_start(cmd, fn, 0, None, 1000 + i)  # type: ignore[arg-type]
    assert len(pending.heap) == 1 and pending.heap[0][0] == 6000
    pending.tick(None, 6000)  # type: ignore[arg-type]  # extended: re-armed at the last event's deadline
    assert not started and [d[0] for d in pending.heap] == [6999]
    pending.tick(None, 6999)  # type: ignore[arg-type]
    assert started == ["r-e999"] and not list(pending.listing())
