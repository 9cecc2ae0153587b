"""The run owner's throttle without a broker: starts fed as the loop would, a held queue whose head alone has
the release timer, the token written to the ``throttles`` changelog, a cancelled head handing its timer on, and
a record that fails undone whole (queue, pacing store, table). Also singleton's two modes in the owner."""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import pytest

import pipeline
from pipeline.config import Settings
from pipeline.kafka import topics as t
from pipeline.kafka.emitter import Emitter
from pipeline.kafka.store import Store
from pipeline.run_owner.owner import RunOwner
from pipeline.run_owner.rearm import rearm
from pipeline.run_owner.throttle import PacingTable
from pipeline.run_owner.undo import UndoLog
from pipeline.sdk.app import Registry
from pipeline.serde import RUN_COMMAND, Serde

from .fakes import FakeMessage, run_table, store_dir

client = pipeline.Inngest(app_id="unit-throttle")
SERDE = Serde()


@client.create_function(fn_id="paced", trigger=pipeline.TriggerEvent(event="u/paced"),
                        throttle=pipeline.Throttle(limit=1, period=60_000, strict=True))
def paced(ctx: pipeline.ContextSync) -> str:
    return "ok"


@client.create_function(fn_id="only", trigger=pipeline.TriggerEvent(event="u/only"),
                        singleton=pipeline.Singleton(key="event.data.k", mode="cancel"))
def only(ctx: pipeline.ContextSync) -> str:
    return "ok"


@client.create_function(fn_id="first", trigger=pipeline.TriggerEvent(event="u/first"),
                        singleton=pipeline.Singleton(mode="skip"))
def first(ctx: pipeline.ContextSync) -> str:
    return "ok"


def _command(kind: str, run_id: str, fn: pipeline.Function, data: dict[str, Any] | None = None) -> FakeMessage:
    event = {"id": f"e-{run_id}", "name": "u/x", "data": data or {}, "user": {}, "ts": 1_700_000_000_000}
    return FakeMessage(SERDE.encode(RUN_COMMAND, {
        "kind": kind, "run_id": run_id, "function_id": fn.id, "ts": 1, "event": json.dumps(event),
        "received_at": 1, "reason": "api" if kind == "cancel" else None, "source_id": None, "attempt": 0,
        "step_id": None}))


def _owner() -> tuple[RunOwner, Emitter]:
    settings = Settings(gate_max_wait_ms=0)
    owner = RunOwner(Registry([client]), settings)
    owner.tables[0] = run_table()
    owner.throttles.states[0] = PacingTable(Store(store_dir("throttles-") / "throttles-0"), owner.undo)
    rearm(owner, 0, time.time_ns() // 1_000_000)
    return owner, Emitter(SERDE, settings)


def _memory(owner: RunOwner) -> dict[str, Any]:
    return copy.deepcopy({
        "tables": dict(owner.tables[0]), "queues": owner.throttles.queues.get(0),
        "pacing": list(owner.throttles.states[0].store.scan(b"", b"\xff")), "timers": sorted(owner.timers.heap)})


def test_one_start_per_period_the_rest_held_with_the_timer_on_the_head_only() -> None:
    owner, out = _owner()
    for run_id in ("a", "b", "c"):
        owner.process(_command("start", run_id, paced), out)
    table = owner.tables[0]
    assert table["a"]["inflight_at"] is not None
    assert (table["b"]["held"], table["c"]["held"]) == ("throttle", "throttle")
    assert table["b"]["wake_at"] >= table["a"]["started_at"] + 60_000 and table["c"]["wake_at"] is None
    pacing = owner.throttles.states[0].get(paced.id)
    assert pacing is not None and pacing["starts"] == [table["a"]["started_at"]]


def test_a_cancelled_head_uses_no_token_and_hands_its_timer_on() -> None:
    owner, out = _owner()
    for run_id in ("a", "b", "c"):
        owner.process(_command("start", run_id, paced), out)
    release = owner.tables[0]["b"]["wake_at"]
    pacing = owner.throttles.states[0].get(paced.id)
    owner.process(_command("cancel", "b", paced), out)
    assert owner.tables[0]["b"]["status"] == "Cancelled"
    assert owner.tables[0]["c"]["wake_at"] == release  # c takes b's place, not a later one
    assert owner.throttles.states[0].get(paced.id) == pacing
    assert [e[2] for e in owner.throttles.queues[0][paced.id]] == ["c"]


def test_a_record_that_fails_after_its_changes_is_undone_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    owner, out = _owner()
    for run_id in ("a", "b", "c"):
        owner.process(_command("start", run_id, paced), out)
    owner.end_batch(out)
    before = _memory(owner)
    real = owner.apply

    def apply(tr: Any, *args: Any, **kwargs: Any) -> None:
        real(tr, *args, **kwargs)
        raise RuntimeError("failed after its changes")

    monkeypatch.setattr(owner, "apply", apply)
    with pytest.raises(RuntimeError):
        owner.process(_command("cancel", "b", paced), out)
    assert _memory(owner) != before
    owner.discard()
    assert _memory(owner) == before


def test_singleton_cancel_mode_cancels_the_active_run_in_the_start_and_skip_mode_skips() -> None:
    owner, out = _owner()
    owner.process(_command("start", "s1", only, {"k": 1}), out)
    owner.process(_command("start", "s2", only, {"k": 2}), out)  # another key: both active
    owner.process(_command("start", "s3", only, {"k": 1}), out)
    table = owner.tables[0]
    assert (table["s1"]["status"], table["s1"]["cancel_source"], table["s2"]["status"]) == ("Cancelled", "s3",
                                                                                             "Running")
    owner.process(_command("start", "f1", first), out)
    owner.process(_command("start", "f2", first), out)
    assert (table["f1"]["status"], table["f2"]["status"], table["f2"]["cancel_source"]) == ("Running", "Skipped",
                                                                                            "f1")
    system = [SERDE.decode(payload)[1] for topic, _, payload, _, _ in out._pending if topic == owner.system_topic]
    assert [(e["name"], json.loads(e["data"])["run_id"]) for e in system] == [
        ("inngest/function.cancelled", "s1"), ("inngest/function.finished", "s1")]  # nothing for f2: skipped


def test_the_token_goes_to_the_throttles_changelog_of_the_partition() -> None:
    owner, out = _owner()
    owner.process(_command("start", "a", paced), out)
    sent = [(key, json.loads(payload), p) for topic, key, payload, p, _ in out._pending
            if topic == owner.settings.topic(t.THROTTLES)]
    started = owner.tables[0]["a"]["started_at"]
    assert sent == [(paced.id, {"tat": 0.0, "starts": [started], "idle_at": started + 60_000}, 0)]


def test_idle_keys_are_removed_with_tombstones_as_starts_go_on() -> None:
    owner, out = _owner()
    tokens = owner.throttles.states[0]
    for key, idle_at in (("old-1", 1), ("old-2", 2), ("fresh", 10**13)):
        tokens.put(key, json.dumps({"tat": float(idle_at), "starts": [], "idle_at": idle_at}).encode())
    owner.undo.begin()
    owner.process(_command("start", "a", paced), out)
    sent = [(key, payload) for topic, key, payload, _, _ in out._pending if topic == owner.settings.topic(t.THROTTLES)]
    assert sent[:2] == [("old-1", None), ("old-2", None)] and sent[2][0] == paced.id
    assert tokens.get("old-1") is None and tokens.get("fresh") is not None
    assert tokens.idle(10**13, 10) == [paced.id, "fresh"]  # longest idle first


def test_a_restore_rebuilds_the_idle_index_and_a_tombstone_clears_it() -> None:
    tokens = PacingTable(Store(store_dir("throttles-") / "throttles-0"), UndoLog())
    tokens.load(FakeMessage(key_=b"k", value_=json.dumps({"tat": 5.0, "starts": [], "idle_at": 5}).encode()))
    tokens.load(FakeMessage(key_=b"k", value_=json.dumps({"tat": 7.0, "starts": [], "idle_at": 7}).encode()))
    assert tokens.idle(6, 10) == [] and tokens.idle(7, 10) == ["k"]
    tokens.load(FakeMessage(key_=b"k", value_=None))
    assert tokens.idle(10**13, 10) == [] and tokens.get("k") is None
