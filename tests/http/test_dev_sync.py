"""`pipeline dev -u URL` as a user runs it: dev started before the app (it syncs the app once it answers), with no
`--app` at all (its children run `--no-app`), and the app's function run through dev's API."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from pipeline.testing.helpers import unique_name
from tests.e2e.test_dev import until as _until

from .harness import free_port, python_app

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_dev_syncs_an_app_that_starts_after_it(kafka_bootstrap: str, tmp_path: Path) -> None:
    port, app_port = free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PIPELINE_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "PIPELINE_TOPIC_PREFIX": unique_name("devu") + ".", "PIPELINE_INSTANCE_ID": "dev-u-test"}
    url = f"http://127.0.0.1:{app_port}/api/inngest"
    with (tmp_path / "dev.log").open("w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "dev", "-u", url, "--port", str(port)],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _until(lambda: httpx.get(f"{base}/healthz").status_code == 200, 90, "dev's API")
        with python_app(port, "py_app", tmp_path, port=app_port):
            # dev says "app synced" once the app answered its PUT, which it does after the sync settled
            _until(lambda: '"app synced"' in (tmp_path / "dev.log").read_text(), 60, "dev to sync the app")
            assert any(a["id"] == "py-app" for a in httpx.get(f"{base}/v1/apps").json()["data"])
            k = str(uuid.uuid4())
            sent = httpx.post(f"{base}/e/dev-key", json={"name": "py/fanout", "data": {"k": k}})
            (event_id,) = sent.json()["ids"]
            try:
                run = _until(lambda: next((r for r in httpx.get(f"{base}/v1/events/{event_id}/runs").json()["data"]
                                           if r["status"] == "Completed"), None), 90, "the run to complete")
            except AssertionError:
                runs = httpx.get(f"{base}/v1/events/{event_id}/runs").json()
                raise AssertionError(f"{runs} {(tmp_path / 'dev.log').read_text()[-4000:]}") from None
            assert run["function_id"] == "py-app-fanout"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, (tmp_path / "dev.log").read_text()[-3000:]
