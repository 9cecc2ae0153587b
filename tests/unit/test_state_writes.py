"""The run owner writes each run's state once per batch, undoes a failed record's changes, and refuses a state
too large for the broker while the record that made it is still being processed (no broker: the owner is fed
records directly and its output is read from the emitter)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

import pipeline
from pipeline.config import Settings
from pipeline.kafka.emitter import Emitter, OutputTooLarge
from pipeline.run_owner.owner import RunOwner
from pipeline.run_owner.rearm import rearm
from pipeline.run_owner.writes import StateWrites
from pipeline.sdk.app import Registry
from pipeline.serde import INVOCATION, RUN_COMMAND, RUN_STATE, STEP_OUTCOME, Serde

from .fakes import FakeMessage, run_table

client = pipeline.Inngest(app_id="unit-writes")


@client.create_function(fn_id="one", trigger=pipeline.TriggerEvent(event="w/one"))
def one(ctx: pipeline.ContextSync) -> str:
    return ctx.step.run("s", lambda: "ok")


def Msg(value: bytes, partition: int = 0) -> FakeMessage:
    return FakeMessage(value_=value, partition_=partition)


SERDE = Serde()


def start(run_id: str) -> FakeMessage:
    event = {"id": f"e-{run_id}", "name": "w/one", "data": {}, "user": {}, "ts": 1_700_000_000_000}
    return Msg(SERDE.encode(RUN_COMMAND, {"kind": "start", "run_id": run_id, "function_id": one.id, "ts": 1,
                                          "event": json.dumps(event), "received_at": 1, "reason": None,
                                          "source_id": None, "attempt": 0, "step_id": None}))


def outcome(state: dict[str, Any], output: str) -> FakeMessage:
    return Msg(SERDE.encode(STEP_OUTCOME, {
        "run_id": state["run_id"], "function_id": one.id, "seq": state["seq"], "attempt": state["attempt"],
        "kind": "step", "step_id": "s", "output": output, "wake_at": None, "events": None, "error": None,
        "retriable": True, "started_at": 1, "finished_at": 2, "worker": "w", "wait": None, "final": output}))


def owner(**settings: Any) -> tuple[RunOwner, Emitter]:
    s = Settings(**settings)
    o = RunOwner(Registry([client]), s)
    o.tables[0] = run_table()
    rearm(o, 0, time.time_ns() // 1_000_000)  # as an assignment does: the timer horizon
    return o, Emitter(SERDE, s)


def sent(out: Emitter, schema_topic: str) -> list[dict[str, Any]]:
    return [SERDE.decode(v)[1] for topic, _, v, _, _ in out._pending if topic.endswith(schema_topic) and v]


def test_a_run_started_and_dispatched_in_one_batch_is_written_once_at_its_end() -> None:
    o, out = owner()
    for rid in ("a", "b"):
        o.process(start(rid), out)
    assert sent(out, "runs") == []  # kept back until the batch ends
    assert len(sent(out, "invocations")) == 2  # the invocations go out with their record
    o.end_batch(out)
    states = sent(out, "runs")
    assert sorted(s["run_id"] for s in states) == ["a", "b"]  # one record per run, not Queued then Running
    assert all(s["status"] == "Running" and s["seq"] == 1 for s in states)
    out._pending.clear()
    o.end_batch(out)
    assert sent(out, "runs") == []  # nothing changed since


def test_the_last_state_of_a_batch_is_the_one_written() -> None:
    o, out = owner()
    o.process(start("a"), out)
    o.end_batch(out)
    out._pending.clear()
    o.process(outcome(o.tables[0]["a"], '"ok"'), out)  # the step lands and the handler's result ends the run
    o.end_batch(out)
    states = sent(out, "runs")
    assert len(states) == 1 and states[0]["status"] == "Completed" and states[0]["output"] == '"ok"'
    assert [e["name"] for e in sent(out, "system-events")] == ["inngest/function.finished"]


def test_a_dead_lettered_record_leaves_no_trace_in_the_table_or_the_writes() -> None:
    o, out = owner()
    o.process(start("a"), out)
    before = o.tables[0]["a"]
    o.writes.begin()
    o._write(dict(before, status="Failed"), 0, out)  # what a record did before it raised
    o._write(dict(before, run_id="new", status="Queued"), 0, out)
    o.discard()  # the loop dead-letters it
    assert o.tables[0]["a"] is before and "new" not in o.tables[0]
    o.end_batch(out)
    assert [s["status"] for s in sent(out, "runs")] == ["Running"]


def test_a_state_too_large_for_the_broker_fails_its_record_before_touching_the_table() -> None:
    writes = StateWrites("runs", max_bytes=2_000)
    out = Emitter(SERDE, Settings())
    o, _ = owner()
    o.process(start("a"), out)
    state = o.tables[0]["a"]
    tables = {0: {"a": state}}
    big = dict(state, steps=[{"id": "s", "op": "run", "output": json.dumps("x" * 5_000), "completed_at": 1,
                              "started_at": 1}])
    with pytest.raises(OutputTooLarge):
        writes.write(tables, big, 0, out)
    assert tables[0]["a"] is state and writes.dirty == {}


def test_an_oversized_step_output_fails_the_run_instead_of_wedging_it() -> None:
    o, out = owner(max_output_bytes=3_000)
    o.process(start("a"), out)
    o.end_batch(out)
    out._pending.clear()
    o.process(outcome(o.tables[0]["a"], json.dumps("y" * 10_000)), out)
    o.end_batch(out)
    final = sent(out, "runs")[-1]
    assert final["status"] == "Failed" and "OutputTooLarge" in (final["error"] or "")


def test_revoked_partitions_drop_their_pending_writes() -> None:
    writes = StateWrites("runs", max_bytes=1_000_000)
    out = Emitter(SERDE, Settings())
    tables: dict[int, dict[str, Any]] = {}
    o, _ = owner()
    o.process(start("a"), out)
    writes.write(tables, o.tables[0]["a"], 0, out)
    writes.write(tables, dict(o.tables[0]["a"], run_id="b"), 1, out)
    writes.forget([0])
    out._pending.clear()
    writes.flush(out, tables)
    assert [s["run_id"] for s in sent(out, "runs")] == ["b"]


def test_invocations_are_encoded_with_their_schema() -> None:
    o, out = owner()
    o.process(start("a"), out)
    inv = [SERDE.decode(v) for topic, _, v, _, _ in out._pending if topic.endswith("invocations")]
    assert inv[0][0] == INVOCATION and inv[0][1]["seq"] == 1
    o.end_batch(out)
    assert SERDE.decode(next(v for t, _, v, _, _ in out._pending if t.endswith("runs")))[0] == RUN_STATE


def test_the_run_table_remembers_run_ids_it_lacks_and_forgets_them_at_every_write_restore_and_abort() -> None:
    table = run_table()
    reads: list[bytes] = []
    store_get = table.store.get
    table.store.get = lambda key: (reads.append(key), store_get(key))[1]  # type: ignore[method-assign]
    for _ in range(4):  # a start's look-ups of its new run: the store is asked once
        assert table.get("R1") is None and "R1" not in table
    assert reads == [b"rR1"]
    state = {"run_id": "R1", "status": "Queued", "wake_at": None, "deadline_at": None}
    table["R1"] = state  # a write takes the id out
    assert table.get("R1") is state
    table.abort()
    assert table.get("R1") is None  # the aborted write is gone, read from the store again
    assert reads == [b"rR1", b"rR1"]

    assert table.get("R2") is None
    owner_, out = owner()
    owner_.process(start("R2"), out)
    owner_.end_batch(out)
    payload = next(v for _, key, v, _, _ in out._pending if v and SERDE.decode(v)[0] == RUN_STATE and key == "R2")
    table.load(FakeMessage(value_=payload, topic_="runs", key_=b"R2"))  # a restored record takes the id out
    restored = table.get("R2")
    assert restored is not None and restored["run_id"] == "R2" and restored["status"] == "Running"
