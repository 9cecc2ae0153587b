"""batch_events against a real broker (issue 21): every event in exactly one batch through a run owner SIGKILLed
midway; a full batch starts at once, the rest at the timeout; an event whose ``if`` is false runs alone."""

from __future__ import annotations

import json
import signal
import time

import pytest

from pipeline.kafka import topics as t
from pipeline.protocol.pending import decode_pending
from pipeline.testing.stack import Stack, TopicWatcher
from tests.e2e.procs import service_process

from .flow_app import app
from .test_flow_debounce import APP, _owner_up

pytestmark = pytest.mark.integration


def test_twelve_events_with_the_owner_killed_midway_land_each_in_exactly_one_batch(kafka_bootstrap: str) -> None:
    with Stack(app, kafka_bootstrap, services=("matcher", "canceller", "worker")) as stack:
        pending = TopicWatcher(stack.bootstrap, stack.settings.topic(t.BATCHES),
                               lambda v: None if v is None else decode_pending(v))
        owner = service_process(stack, "run-owner", "bat-1", app=APP)
        ids = [f"b{i:02d}" for i in range(12)]
        try:
            _owner_up(stack, "warm")
            for event_id in ids[:7]:
                stack.send("flow/batch", {"kind": "bulk"}, id=event_id, flush=False)
            stack.send("flow/batch", {"kind": "now"}, id="alone", flush=False)
            stack.flush()
            # a full batch has started and the next one holds two events, committed
            pending.wait(lambda recs: recs and recs[-1] is not None and len(recs[-1]["commands"]) == 2, 30,
                         "a pending batch of two")
            owner.send_signal(signal.SIGKILL)
            owner.wait(10)
            for event_id in ids[7:]:
                stack.send("flow/batch", {"kind": "bulk"}, id=event_id, flush=False)
            stack.flush()
            owner = service_process(stack, "run-owner", "bat-1", app=APP)

            def batched(records: list) -> list | None:
                latest = {r["run_id"]: r for r in records if r is not None}
                done = [r for r in latest.values() if r["function_id"] == "flow-batched"
                        and r["status"] == "Completed"]
                return done if sum(len(json.loads(r["output"])) for r in done) >= 13 else None

            assert stack.runs is not None
            done = stack.runs.wait(batched, 60, "every event in a completed batch")
            time.sleep(4)  # a timeout more: nothing else may start
            runs = [r for r in stack.latest_runs().values() if r["function_id"] == "flow-batched"]
        finally:
            owner.send_signal(signal.SIGTERM)
            owner.wait(30)
            pending.close()
    batches = [json.loads(r["output"]) for r in runs]
    assert len(runs) == len(done)
    assert sorted(i for b in batches for i in b) == sorted([*ids, "alone"])  # each exactly once
    assert ["alone"] in batches  # its if is false: alone, at once
    assert all(len(b) <= 5 for b in batches)
    assert [b for b in batches if len(b) == 5], batches  # a full batch started without waiting for the timeout
    for r in runs:
        assert r["event_id"] == json.loads(r["output"])[0]  # ctx.event is events[0]
