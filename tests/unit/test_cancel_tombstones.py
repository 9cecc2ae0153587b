"""Which cancel-listener tombstones the run owner writes when a run ends (no broker: the owner is fed records
directly and its output is read from the emitter). The canceller tombstones the listener it matched in the
transaction of its cancel command, so the owner adds one only for listeners the canceller did not remove."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

import pipeline
from pipeline.config import Settings
from pipeline.kafka.emitter import Emitter
from pipeline.run_owner.owner import RunOwner
from pipeline.run_owner.rearm import rearm
from pipeline.sdk.app import Registry
from pipeline.serde import RUN_COMMAND, Serde

from .fakes import FakeMessage, run_table

client = pipeline.Inngest(app_id="unit-tombstones")


@client.create_function(fn_id="one-rule", trigger=pipeline.TriggerEvent(event="t/start"),
                        cancel=[pipeline.Cancel(event="t/stop", if_exp="async.data.id == event.data.id")])
def one_rule(ctx: pipeline.ContextSync) -> None:
    ctx.step.sleep("nap", 3_600_000)


@client.create_function(fn_id="two-rules", trigger=pipeline.TriggerEvent(event="t/start"),
                        cancel=[pipeline.Cancel(event="t/stop", if_exp="async.data.id == event.data.id"),
                                pipeline.Cancel(event="t/abort", if_exp="async.data.id == event.data.id")])
def two_rules(ctx: pipeline.ContextSync) -> None:
    ctx.step.sleep("nap", 3_600_000)


SERDE = Serde()


def command(kind: str, run_id: str, fn_id: str, **fields: Any) -> FakeMessage:
    record = {"kind": kind, "run_id": run_id, "function_id": fn_id, "ts": 1, "event": None, "received_at": None,
              "reason": None, "source_id": None, "attempt": 0, "step_id": None}
    record.update(fields)
    return FakeMessage(value_=SERDE.encode(RUN_COMMAND, record), partition_=0)


def start(run_id: str, fn_id: str) -> FakeMessage:
    event = {"id": f"e-{run_id}", "name": "t/start", "data": {"id": run_id}, "user": {}, "ts": 1_700_000_000_000}
    return command("start", run_id, fn_id, event=json.dumps(event), received_at=1)


def tombstones_after_cancel(fn_id: str, reason: str) -> list[bytes]:
    s = Settings()
    o = RunOwner(Registry([client]), s)
    o.tables[0] = run_table()
    o.listening._partitions = 3  # cancel-index's partition count, which a live owner asks the broker for
    rearm(o, 0, time.time_ns() // 1_000_000)
    out = Emitter(SERDE, s)
    o.process(start("r1", fn_id), out)
    o.end_batch(out)
    out._pending.clear()
    o.process(command("cancel", "r1", fn_id, reason=reason, source_id="e-stop"), out)
    o.end_batch(out)
    assert any(topic.endswith("runs") and v and SERDE.decode(v)[1]["status"] == "Cancelled"
               for topic, _, v, _, _ in out._pending)
    return [key for topic, key, v, _, _ in out._pending if topic.endswith("cancel-index") and v is None]


@pytest.mark.parametrize("reason", ["rest", "bulk", "timeout"])
def test_a_run_cancelled_otherwise_has_its_listener_tombstoned(reason: str) -> None:
    assert len(tombstones_after_cancel(one_rule.id, reason)) == 1


def test_a_run_cancelled_by_its_only_rule_adds_no_second_tombstone() -> None:
    assert tombstones_after_cancel(one_rule.id, "cancel_on") == []


def test_with_two_rules_both_listeners_are_tombstoned_whichever_matched() -> None:
    assert len(tombstones_after_cancel(two_rules.id, "cancel_on")) == 2
