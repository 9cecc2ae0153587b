"""``POST /fn/register`` and the ``functions`` topic on a real broker: refusals by name, a re-sync that drops a
function, and synced functions seen by restarted services (they load the topic at start)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from .harness import HttpStack

pytestmark = pytest.mark.integration
URL = "http://127.0.0.1:9/api/inngest"  # nothing listens: these functions are never called


def body(*fn_ids: str, **extra: Any) -> dict[str, Any]:
    functions = [{"id": f"reg-app-{f}", "name": f, "triggers": [{"event": f"reg/{f}"}],
                  "steps": {"step": {"id": "step", "name": "step",
                                     "runtime": {"type": "http", "url": f"{URL}?fnId=reg-app-{f}&stepId=step"}}},
                  **extra} for f in fn_ids]
    return {"url": URL, "deployType": "ping", "appName": "reg-app", "sdk": "inngest-js:v3.54.2", "v": "0.1",
            "functions": functions}


def test_refusals_re_syncs_and_restarts(kafka_bootstrap: str) -> None:
    with HttpStack(kafka_bootstrap) as http:
        refused = httpx.post(f"{http.api}/fn/register", json=body("a", rateLimit={"limit": 1, "period": "25h"}))
        assert refused.status_code == 400
        assert refused.json()["problems"] == [
            "function 'reg-app-a': rate_limit period '25h': must be between 1s and 24h"]

        first = httpx.post(f"{http.api}/fn/register", json=body("a", "b"))
        assert first.status_code == 200 and first.json()["modified"] is True
        http.wait_served({"reg-app-a", "reg-app-b"})
        same = httpx.post(f"{http.api}/fn/register", json=body("a", "b"))
        assert same.json()["modified"] is False
        down = httpx.post(f"{http.api}/v1/apps/sync", json={"url": URL}, timeout=40).json()  # the UI's button
        assert down["ok"] is False and "ConnectError" in down["answer"]
        (listed,) = httpx.get(f"{http.api}/v1/apps").json()["data"]
        assert httpx.get(f"{http.api}/v1/apps").json()["syncs"] == [down]  # the failed sync, with its error
        assert listed["id"] == "reg-app" and listed["url"] == URL and listed["sdk"] == "inngest-js:v3.54.2"
        assert sorted(f["id"] for f in listed["functions"]) == ["reg-app-a", "reg-app-b"]

        dropped = httpx.post(f"{http.api}/fn/register", json=body("a"))
        assert dropped.json()["modified"] is True
        http.wait_served({"reg-app-a"})
        http.wait_until(lambda: all("reg-app-b" not in r.by_id for r in http.registries()), "b removed")

        for name in ("matcher", "run-owner", "worker"):  # a restarted service loads the topic before any input
            http.stack.stop_service(name)
            http.stack.start_service(name)
        assert all(set(r.by_id) == {"reg-app-a"} for r in http.registries())

        k = str(uuid.uuid4())  # and runs it: the app is down, so the run fails with the error, after its retries
        http.send({"name": "reg/a", "data": {"k": k}})
        run = http.stack.wait_run(lambda r: r["function_id"] == "reg-app-a" and r["status"] == "Failed", timeout=60)
        assert json.loads(run["error"])["name"] == "AppUnreachable"


def test_the_last_sync_of_each_app_is_kept_across_restarts(kafka_bootstrap: str) -> None:
    """A sync the app started itself (its own POST /fn/register, as after any PUT) is kept as the app's last sync,
    refusal and problems included, on the app-syncs topic: GET /v1/apps shows it, also from a restarted API."""
    from pipeline.api.server import start_in_thread, stop
    from pipeline.sdk.app import Registry

    from .harness import free_port

    def last_syncs(api: str) -> dict[str, Any]:
        return {a["id"]: a.get("last_sync") for a in httpx.get(f"{api}/v1/apps").json()["data"]}

    with HttpStack(kafka_bootstrap) as http:
        refused = httpx.post(f"{http.api}/fn/register",
                             json=body("a", concurrency=[{"limit": 1, "scope": "account"}]))
        assert refused.status_code == 400
        http.wait_until(lambda: (last_syncs(http.api).get("reg-app") or {}).get("status") == 400, "the refusal kept")
        last = last_syncs(http.api)["reg-app"]
        assert last["ok"] is False and last["problems"] == \
            ["function 'reg-app-a': concurrency scope 'account': not built yet, only 'fn' is"]
        assert last["url"] == URL and last["sdk"] == "inngest-js:v3.54.2" and last["functions"] == 1

        port = free_port()  # another API instance (a restart): reads the result from the topic
        server = start_in_thread(http.stack.settings, "127.0.0.1", port, registry=Registry([]))
        try:
            other = f"http://127.0.0.1:{port}"
            http.wait_until(lambda: last_syncs(other).get("reg-app") == last, "the refusal seen after a restart")
            (app,) = httpx.get(f"{other}/v1/apps").json()["data"]
            assert app["functions"] == [] and app["synced_at"] == 0  # never synced: listed for its refusal

            ok = httpx.post(f"{http.api}/fn/register", json=body("a"))
            assert ok.status_code == 200
            http.wait_until(lambda: (last_syncs(other).get("reg-app") or {}).get("ok") is True, "the good sync kept")
            assert last_syncs(other)["reg-app"]["problems"] == [] and last_syncs(other)["reg-app"]["modified"] is True
        finally:
            stop(*server)
