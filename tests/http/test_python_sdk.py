"""An inngest-py app (the official SDK from PyPI, served by FastAPI under uvicorn) run by this runtime:
step.run with a retry, sleep, wait_for_event with and without its event, send_event, cancel during a sleep
and right after the trigger, NonRetriableError with on_failure, group.parallel, a repeated step id, invoke,
rate_limit and idempotency."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline.kafka import topics as t
from pipeline.serde import EVENT
from pipeline.testing.stack import TopicWatcher

from .harness import App, HttpStack, python_app

pytestmark = pytest.mark.integration
FUNCTIONS = {"py-app-flaky", "py-app-doomed", "py-app-doomed-failure", "py-app-fanout", "py-app-child",
             "py-app-steady", "py-app-one-step", "py-app-limited"}


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


@pytest.fixture(scope="module")
def served(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HttpStack, App]]:
    with HttpStack(kafka_bootstrap) as http, python_app(http.api_port, "py_app", tmp_path_factory.mktemp("py")) as app:
        answer = http.sync(app, FUNCTIONS)
        assert answer["modified"] is True, answer
        yield http, app


def of(fn: str, k: str) -> Callable[[dict[str, Any]], bool]:
    return lambda r: r["function_id"] == fn and json.loads(r["event"])["data"].get("k") == k


def ended(http: HttpStack, fn: str, k: str, timeout: float = 30) -> dict[str, Any]:
    match = of(fn, k)
    return http.stack.wait_run(lambda r: match(r) and r["status"] in ("Completed", "Failed", "Cancelled"),
                               timeout=timeout)


def test_retry_sleep_wait_matched_and_send_event(served: tuple[HttpStack, App]) -> None:
    http, app = served
    k = str(uuid.uuid4())
    http.send({"name": "py/flaky", "data": {"k": k}})
    http.stack.wait_run(lambda r: of("py-app-flaky", k)(r) and r["status"] == "Waiting", timeout=30)
    http.send({"name": "py/go", "data": {"k": k, "note": "go"}})
    run = ended(http, "py-app-flaky", k)
    assert run["status"] == "Completed", (run["error"], app.output()[-2000:])
    assert json.loads(run["output"]) == {"first": {"attempt": 1}, "got": {"k": k, "note": "go"}, "sent": 1}
    ids = [s["id"] for s in run["steps"]]
    assert ids == [sha1("fails-once"), sha1("nap"), sha1("wait-go"), sha1("tell")]
    watcher = TopicWatcher(http.stack.bootstrap, http.stack.settings.topic(t.EVENTS),
                           lambda v: http.stack.serde.decode_as(EVENT, v))
    try:  # step.send_event went through this runtime's POST /e/{key}, once
        told = watcher.wait(lambda rs: [r for r in rs if r["name"] == "py/told" and k in r["data"]], 10, "py/told")
    finally:
        watcher.close()
    assert len(told) == 1


def test_wait_times_out_to_none(served: tuple[HttpStack, App]) -> None:
    http, _ = served
    k = str(uuid.uuid4())
    http.send({"name": "py/flaky", "data": {"k": k, "wait_s": 1, "nap_s": 0}})
    run = ended(http, "py-app-flaky", k)
    assert run["status"] == "Completed" and json.loads(run["output"])["got"] is None


def test_cancel_during_the_sleep_and_right_after_the_trigger(served: tuple[HttpStack, App]) -> None:
    http, _ = served
    sleeper, early = str(uuid.uuid4()), str(uuid.uuid4())
    http.send({"name": "py/flaky", "data": {"k": sleeper, "nap_s": 600}})
    http.stack.wait_run(lambda r: of("py-app-flaky", sleeper)(r) and r["status"] == "Sleeping", timeout=30)
    http.send({"name": "py/stop", "data": {"k": sleeper}})
    http.send({"name": "py/flaky", "data": {"k": early}}, {"name": "py/stop", "data": {"k": early}})
    assert ended(http, "py-app-flaky", sleeper)["status"] == "Cancelled"
    assert ended(http, "py-app-flaky", early)["status"] == "Cancelled"


def test_non_retriable_error_fails_at_once_and_on_failure_runs(served: tuple[HttpStack, App]) -> None:
    http, _ = served
    k = str(uuid.uuid4())
    http.send({"name": "py/doomed", "data": {"k": k}})
    run = ended(http, "py-app-doomed", k)
    assert run["status"] == "Failed" and run["attempt"] == 1  # no retry although retries=3
    assert json.loads(run["error"])["name"] == "NonRetriableError"
    failure = http.stack.wait_run(lambda r: r["function_id"] == "py-app-doomed-failure"
                                  and r["status"] == "Completed"
                                  and json.loads(r["event"])["data"]["run_id"] == run["run_id"], timeout=30)
    assert failure is not None


def test_parallel_repeated_step_ids_and_invoke(served: tuple[HttpStack, App]) -> None:
    http, app = served
    k = str(uuid.uuid4())
    http.send({"name": "py/fanout", "data": {"k": k}})
    run = ended(http, "py-app-fanout", k)
    assert run["status"] == "Completed", (run["error"], app.output()[-2000:])
    assert json.loads(run["output"]) == {"pair": ["a", "b"], "repeated": [0, 10, 20], "child": 42}
    ids = {s["id"] for s in run["steps"]}
    assert {sha1("again"), sha1("again:1"), sha1("again:2"), sha1("side"), sha1("other-side")} <= ids


def test_a_retried_send_with_the_same_id_seed_starts_one_run(served: tuple[HttpStack, App]) -> None:
    http, _ = served
    k = str(uuid.uuid4())
    seed = {"X-Inngest-Event-Id-Seed": f"{int(time.time() * 1000)},{base64.b64encode(os.urandom(10)).decode()}"}
    first = http.send({"name": "py/fanout", "data": {"k": k}}, headers=seed)
    again = http.send({"name": "py/fanout", "data": {"k": k}}, headers=seed)  # the SDK's retry of that send
    assert first == again
    run = ended(http, "py-app-fanout", k)
    time.sleep(1)
    runs = {r["run_id"] for r in http.stack.runs.records if r and of("py-app-fanout", k)(r)}  # type: ignore[union-attr]
    assert runs == {run["run_id"]} and run["event_id"] == first[0]


def test_rate_limit_and_idempotency_drop_events_before_any_call(served: tuple[HttpStack, App]) -> None:
    """The SDK's ``rateLimit`` (1 per 2 min per k) and ``idempotency`` (per order), synced: a repeated order is
    dropped by idempotency, another order of the same k by the rate limit, and the API lists both."""
    http, _ = served
    k = str(uuid.uuid4())
    http.send({"name": "py/limited", "data": {"k": k, "order": 1}})
    run = ended(http, "py-app-limited", k)
    for order in (1, 2):  # in either order: a duplicate is dropped as one, and the other uses no slot it has not
        http.send({"name": "py/limited", "data": {"k": k, "order": order}})
    deadline = time.monotonic() + 30
    while True:
        dropped = httpx.get(f"{http.api}/v1/functions/py-app-limited/dropped").json()["data"]
        mine = [d for d in dropped if d["event"]["data"]["k"] == k]
        if len(mine) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert run["status"] == "Completed" and json.loads(run["output"]) == 1
    assert sorted((d["reason"], d["event"]["data"]["order"]) for d in mine) == [("idempotency", 1), ("rate_limit", 2)]


SIGNING_KEY = "signkey-test-" + "ab" * 32


def test_signed_mode_sync_calls_and_sends(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Outside dev mode: the app (INNGEST_DEV=0, INNGEST_SIGNING_KEY) syncs with the hashed key as its bearer
    token and accepts only calls signed with the key; an unsigned sync is refused."""
    with HttpStack(kafka_bootstrap, signing_key=SIGNING_KEY) as http, \
            python_app(http.api_port, "py_app", tmp_path, INNGEST_DEV="0", INNGEST_SIGNING_KEY=SIGNING_KEY,
                       INNGEST_EVENT_KEY="test-key") as app:
        refused = httpx.post(f"{http.api}/fn/register", json={"appName": "x", "url": "http://x", "functions": []},
                             headers={"Authorization": "Bearer signkey-test-00"})
        assert refused.status_code == 401
        http.sync(app, FUNCTIONS)
        unsigned = httpx.post(f"{app.url}?fnId=py-app-flaky&stepId=step", json={"event": {}}, timeout=10)
        assert unsigned.status_code >= 400  # the app is in cloud mode: it checks our signatures
        k = str(uuid.uuid4())
        http.send({"name": "py/flaky", "data": {"k": k, "wait_s": 1, "nap_s": 0}})
        run = ended(http, "py-app-flaky", k, timeout=60)
        assert run["status"] == "Completed", (run["error"], app.output()[-2000:])
        assert json.loads(run["output"])["sent"] == 1
