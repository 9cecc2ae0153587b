"""batch_events against a real broker (issue 21): every event in exactly one batch through a run owner SIGKILLed
midway; a full batch starts at once, the rest at the timeout; an event whose ``if`` is false runs alone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from pipeline.kafka import topics as t
from pipeline.protocol.pending import decode_pending
from pipeline.testing.helpers import free_port as _free_port
from pipeline.testing.helpers import unique_name
from pipeline.testing.stack import Stack, TopicWatcher
from tests.e2e.procs import ROOT, service_process
from tests.e2e.test_dev import until as _until

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


def test_the_batch_example_through_pipeline_dev(kafka_bootstrap: str, tmp_path: Path) -> None:
    """As a user runs it: `pipeline dev --app examples.flow_batch:app`, events over HTTP, the batch on the API's
    pending list, then one run with the whole batch, and the event whose if is false alone."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PIPELINE_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "PIPELINE_TOPIC_PREFIX": unique_name("devflow") + ".", "PIPELINE_INSTANCE_ID": "dev-flow"}
    log_path = tmp_path / "dev.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "dev", "--app", "examples.flow_batch:app",
                                 "--port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    fn = "flow-batch-record-views"
    try:
        _until(lambda: httpx.get(f"{base}/healthz").status_code == 200, 60, "the API to be ready")
        (listed,) = [f for f in httpx.get(f"{base}/v1/functions").json()["data"] if f["id"] == fn]
        assert listed["flow"]["batch_events"]["max_size"] == 100
        # an event that runs alone first: once it has run, the services are up (a batch's timeout counts from
        # the broker's receive time, so events sent while the run owner still starts could be due at once)
        assert httpx.post(f"{base}/e/dev-key", json={"name": "site/page.viewed", "data": {"kind": "alert"}}).is_success
        _until(lambda: [r for r in httpx.get(f"{base}/v1/runs", params={"function": fn}).json()["data"]
                        if r["status"] == "Completed"], 60, "the services to be up")
        events = [{"name": "site/page.viewed", "data": {"kind": "view", "path": f"/p{i}"}} for i in range(7)]
        events.append({"name": "site/page.viewed", "data": {"kind": "alert"}})
        sent = httpx.post(f"{base}/e/dev-key", json=events)
        assert sent.status_code == 200, sent.text
        ids = sent.json()["ids"]
        pending = _until(lambda: [p for p in httpx.get(f"{base}/v1/pending").json()["data"] if p["size"] == 7], 30,
                         "the filling batch on the pending list")
        assert pending[0]["kind"] == "batch" and sorted(pending[0]["events"]) == sorted(ids[:7])

        def done() -> list | None:
            runs = httpx.get(f"{base}/v1/runs", params={"function": fn}).json()["data"]
            return runs if len(runs) == 3 and all(r["status"] == "Completed" for r in runs) else None

        runs = _until(done, 60, "the batch's run and the two alone")
        outputs = sorted(httpx.get(f"{base}/v1/runs/{r['run_id']}").json()["data"]["output"] for r in runs)
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(60)
    assert code == 0, log_path.read_text()[-3000:]
    assert outputs == [1, 1, 7]
