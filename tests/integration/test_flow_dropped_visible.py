"""Dropped events are visible: counted in ``pipeline_flow_dropped_events_total``, listed by
``GET /v1/functions/{id}/dropped`` (also after the API restarts: it reads them back from ``dropped-events``), and
the function's flow options shown by ``GET /v1/functions``. Real broker, services and API in this process."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from pipeline.kafka import metrics
from pipeline.kafka import topics as t
from pipeline.testing import await_records
from pipeline.testing.stack import Stack

from .flow_drop_app import api, app, sync_account

pytestmark = pytest.mark.integration
KEY = "flow-drop-signing-key-0123456789"


def _dropped(base: str, fn_id: str, count: int) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        body: dict[str, Any] = httpx.get(f"{base}/v1/functions/{fn_id}/dropped",
                                         headers={"Authorization": f"Bearer {KEY}"}).json()
        if len(body["data"]) >= count or time.monotonic() > deadline:
            return body
        time.sleep(0.2)


def test_dropped_events_are_counted_listed_and_survive_an_api_restart(kafka_bootstrap: str) -> None:
    counter = metrics.FLOW_DROPPED.labels(sync_account.id, "rate_limit")
    before = counter._value.get()
    with Stack(app, kafka_bootstrap, signing_key=KEY) as stack:
        for n in range(3):
            stack.send("flow/sync", {"account": "hooli", "n": n})
        with api(stack) as base:
            first = _dropped(base, sync_account.id, 2)
            functions = httpx.get(f"{base}/v1/functions", headers={"Authorization": f"Bearer {KEY}"}).json()["data"]
        with api(stack) as base:  # a restarted API reads them back from the topic
            again = _dropped(base, sync_account.id, 2)
    # events of one key may reach the owner in another order than they were sent (their events partitions are
    # read side by side): whichever comes first is admitted, the other two are dropped
    assert [(d["reason"], d["key"]) for d in first["data"]] == [("rate_limit", '"hooli"')] * 2
    assert len({d["event"]["data"]["n"] for d in first["data"]}) == 2
    assert [d["received_at"] for d in first["data"]] == sorted((d["received_at"] for d in first["data"]),
                                                               reverse=True)  # newest first
    assert first["total"] == 2 and again == first
    assert counter._value.get() - before == 2
    (fn,) = [f for f in functions if f["id"] == sync_account.id]
    assert fn["flow"] == {"rate_limit": {"limit": 1, "period_ms": 90_000, "burst": 0, "key": "event.data.account"}}


def test_an_event_whose_flow_key_fails_is_dead_lettered_with_the_reason(kafka_bootstrap: str) -> None:
    """A key over a missing field: the matcher evaluates every flow key of a function (one key routes the run, two
    different keys route it by function) and dead-letters the event with the reason. Neither starts a run under a
    null key."""
    with Stack(app, kafka_bootstrap) as stack:
        stack.send("flow/sync", {"n": 1}, id="no-account")
        stack.send("flow/mixed", {"account": "a"}, id="no-order")
        stack.send("flow/mixed", {"account": "a", "order": 1}, id="fine")
        stack.wait_run(lambda r: r["event_id"] == "fine" and r["status"] == "Completed", timeout=60)
        dead = await_records(kafka_bootstrap, stack.settings.topic(t.DEAD_LETTER), 2, timeout=30)
        runs = {r["event_id"] for r in stack.latest_runs().values()}
    headers = [{k: (v or b"").decode() for k, v in m.headers() or []} for m in dead]
    assert {h["dlq.source.topic"].rsplit(".", 1)[-1] for h in headers} == {"events"}
    reasons = " ".join(h["dlq.reason"] for h in headers)
    assert "account" in reasons and "order" in reasons
    assert runs == {"fine"}
