"""REST and bulk cancellation end to end: HTTP API + services on a real broker."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from pipeline.api.server import bound_port, start_in_thread, stop
from pipeline.testing.stack import Stack

from .apps import app

pytestmark = pytest.mark.integration
CANCELLED = "inngest/function.cancelled"
KEY = "sign-me"


@pytest.fixture
def stack_api(kafka_bootstrap: str) -> Iterator[tuple[Stack, httpx.Client]]:
    with Stack(app, kafka_bootstrap, signing_key=KEY) as stack:
        server, thread = start_in_thread(stack.settings, "127.0.0.1", 0, wait_ready=True)
        try:
            client = httpx.Client(base_url=f"http://127.0.0.1:{bound_port(server)}",
                                  headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
            yield stack, client
            client.close()
        finally:
            stop(server, thread)


def _sleeping_run(stack: Stack, key: str) -> dict:
    stack.send("test/long", {"key": key, "sleep": 300}, id=f"ev-{key}")
    return stack.wait_run(lambda r: r["event_id"] == f"ev-{key}" and r["status"] == "Sleeping")


def test_rest_cancel_404_409_and_cleanup(stack_api: tuple[Stack, httpx.Client]) -> None:
    stack, client = stack_api
    run = _sleeping_run(stack, "r1")
    assert httpx.delete(f"{client.base_url}/v1/runs/{run['run_id']}").status_code == 401  # no bearer
    assert client.delete("/v1/runs/01JDJKGTGDVV4DTXHY6XYB7BKK").status_code == 404
    first = client.delete(f"/v1/runs/{run['run_id']}")
    assert first.status_code == 200, first.text
    assert client.delete(f"/v1/runs/{run['run_id']}").status_code in (200, 409)  # idempotent
    (cancelled,) = stack.wait_system_event(CANCELLED, lambda e: e["id"] == run["run_id"])
    assert cancelled["data"]["run_id"] == run["run_id"]
    assert cancelled["data"]["error"]["message"] == "function cancelled"
    final = stack.wait_run(lambda r: r["run_id"] == run["run_id"] and r["status"] == "Cancelled")
    assert final["cancel_reason"] == "rest"
    cleanup = stack.wait_run(lambda r: r["function_id"] == "e2e-on-cancel" and r["status"] == "Completed")
    assert cleanup["output"] == '"cleaned r1"'
    deadline = time.monotonic() + 10
    while client.get(f"/v1/runs/{run['run_id']}").json()["data"]["status"] != "Cancelled":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert client.delete(f"/v1/runs/{run['run_id']}").status_code == 409
    time.sleep(1)
    assert len(stack.system_events_named(CANCELLED)) == 1  # no second system event


def test_bulk_cancel_by_window_and_by_if(stack_api: tuple[Stack, httpx.Client]) -> None:
    stack, client = stack_api
    before = int(time.time() * 1000) - 1000
    runs = {k: _sleeping_run(stack, k) for k in ("b1", "b2", "b3")}
    bad = client.post("/v1/cancellations", json={"app_id": "e2e", "function_id": "long",
                                                  "started_before": int(time.time() * 1000) + 60_000})
    assert bad.status_code == 400  # more than 5 s in the future
    bad_if = client.post("/v1/cancellations", json={"app_id": "e2e", "function_id": "long",
                                                     "started_before": int(time.time() * 1000), "if": "event.data.("})
    assert bad_if.status_code == 400
    by_if = client.post("/v1/cancellations", json={
        "app_id": "e2e", "function_id": "long", "started_after": before,
        "started_before": int(time.time() * 1000), "if": "event.data.key == 'b2'"})
    assert by_if.status_code == 200, by_if.text
    stack.wait_system_event(CANCELLED, lambda e: e["id"] == runs["b2"]["run_id"])
    time.sleep(1)
    assert {e["id"] for e in stack.system_events_named(CANCELLED)} == {runs["b2"]["run_id"]}

    window = client.post("/v1/cancellations", json={
        "app_id": "e2e", "function_id": "long", "started_after": before, "started_before": int(time.time() * 1000)})
    assert window.status_code == 200
    stack.wait_system_event(CANCELLED, count=3)
    late = _sleeping_run(stack, "b4")  # started after the window: untouched
    time.sleep(1)
    cancelled_ids = [e["id"] for e in stack.system_events_named(CANCELLED)]
    assert sorted(cancelled_ids) == sorted(r["run_id"] for r in runs.values())
    assert late["run_id"] not in cancelled_ids
    window_id = window.json()["data"]["id"]
    listed = {c["id"]: c for c in client.get("/v1/cancellations").json()["data"]}
    deadline = time.monotonic() + 10
    while listed[window_id]["cancelled_runs"] != 2:  # b1 and b3; b2 was already cancelled by the `if` one
        assert time.monotonic() < deadline, listed
        time.sleep(0.2)
        listed = {c["id"]: c for c in client.get("/v1/cancellations").json()["data"]}
    assert listed[by_if.json()["data"]["id"]]["cancelled_runs"] == 1
    stopped = client.delete(f"/v1/cancellations/{window_id}")
    assert stopped.status_code == 200
    assert client.delete("/v1/cancellations/nope").status_code == 404


def test_bulk_cancel_applies_to_runs_that_start_inside_its_window(stack_api: tuple[Stack, httpx.Client]) -> None:
    stack, client = stack_api
    now = int(time.time() * 1000)
    made = client.post("/v1/cancellations", json={"app_id": "e2e", "function_id": "e2e-long",
                                                   "started_after": now - 1000, "started_before": now + 4000})
    assert made.status_code == 200, made.text
    stack.send("test/long", {"key": "young", "sleep": 300}, id="ev-young")  # scheduled inside the window
    (cancelled,) = stack.wait_system_event(CANCELLED, timeout=30)
    run = stack.wait_run(lambda r: r["event_id"] == "ev-young" and r["status"] == "Cancelled")
    assert run["cancel_reason"] == "bulk" and run["cancel_source"] == made.json()["data"]["id"]
    assert cancelled["id"] == run["run_id"]
