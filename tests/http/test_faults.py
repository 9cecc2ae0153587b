"""Faults around apps over HTTP: the worker SIGKILLed in the middle of a call, the app stopped for 10 s in the
middle of a run, the app down for good, and a cancel while a call is in flight. Each step runs at least once,
each run ends once, nothing is lost, and a late answer starts nothing."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline.testing.stack import Stack

from .harness import HttpStack, python_app

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
STEADY = "py-app-steady"


def worker_process(stack: Stack, instance: str) -> subprocess.Popen[bytes]:
    """``pipeline run worker --no-app`` on the stack's topics: it serves the synced functions only."""
    env = stack.env(PYTHONPATH=str(ROOT), PIPELINE_INSTANCE_ID=instance)
    return subprocess.Popen([sys.executable, "-m", "pipeline.cli", "run", "worker", "--no-app"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def finished(stack: Stack, run_id: str) -> list[dict[str, Any]]:
    return [e for e in stack.system_events.records  # type: ignore[union-attr]
            if e["name"] == "inngest/function.finished" and e["data"]["run_id"] == run_id]


def run_of(stack: Stack, k: str, statuses: tuple[str, ...], timeout: float = 60) -> dict[str, Any]:
    return stack.wait_run(lambda r: r["function_id"] == STEADY and json.loads(r["event"])["data"]["k"] == k
                          and r["status"] in statuses, timeout=timeout)


def test_worker_sigkilled_mid_call_loses_nothing(kafka_bootstrap: str, tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    calls.touch()
    services = ("matcher", "run-owner", "canceller")  # the worker runs as a process, to be SIGKILLed
    with HttpStack(kafka_bootstrap, services=services) as http, \
            python_app(http.api_port, "py_app", tmp_path, PY_APP_CALLS=str(calls)) as app:
        http.sync(app, {STEADY})
        worker = worker_process(http.stack, "w1")
        try:
            k = str(uuid.uuid4())
            http.send({"name": "py/steady", "data": {"k": k, "slow_s": 3}})
            wait_for(lambda: f"{k} one start" in calls.read_text(), 60, "the slow step to start")
            worker.send_signal(signal.SIGKILL)  # in the middle of the app's call
            worker.wait(10)
            worker = worker_process(http.stack, "w1")
            run = run_of(http.stack, k, ("Completed", "Failed", "Cancelled"))
        finally:
            worker.kill()
            worker.wait(10)
        assert run["status"] == "Completed" and json.loads(run["output"]) == {"steps": ["one", "two"]}
        lines = calls.read_text().splitlines()
        assert lines.count(f"{k} one start") >= 2  # the step in flight ran again: at least once
        assert lines.count(f"{k} two") >= 1
        time.sleep(1)
        assert len(finished(http.stack, run["run_id"])) == 1  # and the run ended once


def test_app_stopped_for_10_s_mid_run_then_the_run_goes_on(kafka_bootstrap: str, tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    calls.touch()
    with HttpStack(kafka_bootstrap, retry_backoff_ms=2000) as http:  # retries at 2, 4, 8, 16 s
        port_env = {"PY_APP_CALLS": str(calls)}
        with python_app(http.api_port, "py_app", tmp_path, **port_env) as app:
            http.sync(app, {STEADY})
            port = app.port
            k = str(uuid.uuid4())
            http.send({"name": "py/steady", "data": {"k": k, "pause_s": 1}})
            run_of(http.stack, k, ("Sleeping",), timeout=30)
        stopped = time.monotonic()  # the app is down: the step after the pause fails, and is retried
        wait_for(lambda: any(r and r["function_id"] == STEADY and r["attempt"] >= 1 for r in http.stack.runs.records),
                 30, "a failed attempt while the app is down")  # type: ignore[union-attr]
        time.sleep(max(0.0, 10 - (time.monotonic() - stopped)))
        with python_app(http.api_port, "py_app", tmp_path, port=port, **port_env) as again:
            assert again is not None
            run = run_of(http.stack, k, ("Completed", "Failed", "Cancelled"), timeout=60)
        assert run["status"] == "Completed", run["error"]
        errors = [r for r in http.stack.runs.records if r and r["run_id"] == run["run_id"] and r["error"]]
        assert errors and "AppUnreachable" in errors[0]["error"]
        assert calls.read_text().splitlines().count(f"{k} two") == 1
        assert len(finished(http.stack, run["run_id"])) == 1


def test_app_down_for_good_fails_the_run_with_the_error(kafka_bootstrap: str, tmp_path: Path) -> None:
    with HttpStack(kafka_bootstrap, retry_backoff_ms=100) as http:
        with python_app(http.api_port, "py_app", tmp_path) as app:
            http.sync(app, {STEADY})
        k = str(uuid.uuid4())
        http.send({"name": "py/steady", "data": {"k": k}})
        run = run_of(http.stack, k, ("Completed", "Failed", "Cancelled"), timeout=60)
        assert run["status"] == "Failed" and run["attempt"] == 5  # retries=4: five attempts
        assert json.loads(run["error"])["name"] == "AppUnreachable"


def test_a_cancel_during_a_call_ends_the_run_at_once_and_the_late_answer_starts_nothing(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    calls.touch()
    with HttpStack(kafka_bootstrap) as http, \
            python_app(http.api_port, "py_app", tmp_path, PY_APP_CALLS=str(calls)) as app:
        http.sync(app, {STEADY})
        k = str(uuid.uuid4())
        http.send({"name": "py/steady", "data": {"k": k, "slow_s": 3}})
        wait_for(lambda: f"{k} one start" in calls.read_text(), 30, "the slow step to start")
        run = run_of(http.stack, k, ("Running",))
        sent = time.monotonic()
        response = httpx.delete(f"{http.api}/v1/runs/{run['run_id']}", timeout=10)
        assert response.status_code in (200, 202), response.text
        gone = run_of(http.stack, k, ("Cancelled",), timeout=10)
        assert time.monotonic() - sent < 2.5  # at once, not when the call returns
        wait_for(lambda: f"{k} one end" in calls.read_text(), 10, "the call to return")
        time.sleep(2)
        assert f"{k} two" not in calls.read_text()  # the late answer started nothing
        latest = [r for r in http.stack.runs.records if r and r["run_id"] == gone["run_id"]][-1]
        assert latest["status"] == "Cancelled" and latest["steps"] == []
