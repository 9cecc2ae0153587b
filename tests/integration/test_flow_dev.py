"""The flow examples through ``pipeline dev`` as a user runs them: events over HTTP, the runs and the function's
flow settings read back from the API (issue 21)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from pipeline.testing.helpers import free_port as _free_port
from pipeline.testing.helpers import unique_name
from tests.e2e.test_dev import ROOT
from tests.e2e.test_dev import until as _until

pytestmark = pytest.mark.integration


def test_dev_runs_the_singleton_example_and_shows_its_flow_settings(kafka_bootstrap: str, tmp_path: Path) -> None:
    port = _free_port()
    log_path = tmp_path / "dev.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PIPELINE_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "PIPELINE_TOPIC_PREFIX": unique_name("devflow") + ".", "PIPELINE_INSTANCE_ID": "dev-flow"}
    with log_path.open("w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "dev", "--app",
                                 "examples.flow_singleton:inngest_client", "--port", str(port)],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def send() -> str:
        sent = httpx.post(f"{base}/e/dev-key", json={"name": "user/sync.requested", "data": {"user_id": "u-1"}})
        assert sent.status_code == 200, sent.text
        (event_id,) = sent.json()["ids"]
        return str(event_id)

    def run_of(event_id: str, status: str) -> dict[str, object] | None:
        return next((r for r in httpx.get(f"{base}/v1/events/{event_id}/runs").json()["data"]
                     if r["status"] == status), None)

    try:
        _until(lambda: httpx.get(f"{base}/healthz").status_code == 200, 60, "the API to be ready")
        first = send()
        _until(lambda: run_of(first, "Sleeping"), 60, "the first run to sleep")
        second = send()
        _until(lambda: run_of(second, "Sleeping"), 60, "the second run to sleep")
        cancelled = _until(lambda: run_of(first, "Cancelled"), 30, "the first run to be cancelled")
        (fn,) = httpx.get(f"{base}/v1/functions").json()["data"]
        listed = httpx.get(f"{base}/v1/runs", params={"status": "Cancelled"}).json()["data"]
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(60)
    assert code == 0, log_path.read_text()[-3000:]
    assert fn["flow"] == {"singleton": {"mode": "cancel", "key": "event.data.user_id"}}
    assert [r["run_id"] for r in listed] == [cancelled["run_id"]]
