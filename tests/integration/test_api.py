"""The HTTP API against a real broker: ingest, runs, bulk cancellations, auth, limits, health.

Each test gets its own topic prefix, so tests sharing one broker never see each other's data.
Run states are produced by hand onto ``runs`` (as the run owner would), so these tests need
no other service.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from fastapi.testclient import TestClient

from pipeline.api import bound_port, create_app, start_in_thread, stop
from pipeline.config import Settings
from pipeline.kafka import topics as t
from pipeline.kafka.client import admin_config, consumer_config, producer_config
from pipeline.protocol.commands import start_command
from pipeline.protocol.ids import run_id_for
from pipeline.run_owner import state as st
from pipeline.serde import BULK_CANCELLATION, EVENT, RUN_COMMAND, RUN_STATE, Serde
from pipeline.serde.models import now_ms

pytestmark = pytest.mark.integration

SIGNING_KEY = "signkey-test-0123456789abcdef"
EVENT_KEY = "evt-key-test"
serde = Serde()


# -- helpers ------------------------------------------------------------------------------------------------------


def make_settings(bootstrap: str, *, create: bool = True, **overrides: Any) -> Settings:
    settings = Settings(bootstrap_servers=bootstrap, topic_prefix=f"t{uuid.uuid4().hex[:8]}.", partitions=3,
                        **overrides)
    if create:
        t.create_topics(AdminClient(admin_config(bootstrap)), settings)
    return settings


@pytest.fixture
def api(kafka_bootstrap: str) -> Iterator[Callable[..., tuple[TestClient, Settings]]]:
    """A factory: ``api(**settings)`` → a started TestClient (lifespan run, tables ready) and its settings."""
    clients: list[TestClient] = []

    def build(*, wait_ready: bool = True, run_wait_seconds: float = 2.0, **overrides: Any
              ) -> tuple[TestClient, Settings]:
        settings = make_settings(kafka_bootstrap, **overrides)
        client = TestClient(create_app(settings, run_wait_seconds=run_wait_seconds))
        client.__enter__()
        clients.append(client)
        if wait_ready:
            state = client.app.state  # type: ignore[attr-defined]
            assert state.runs.wait_ready(30) and state.cancellations.wait_ready(30)
        return client, settings

    yield build
    for client in clients:
        client.__exit__(None, None, None)


def read_topic(bootstrap: str, topic: str, count: int, timeout: float = 20.0) -> list[Any]:
    """The first ``count`` records of every partition of ``topic`` (committed only), as Kafka messages."""
    consumer = Consumer(consumer_config(bootstrap, None, **{"enable.partition.eof": False}))
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        consumer.assign([TopicPartition(topic, p, -2) for p in meta.partitions])
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(out) < count and time.monotonic() < deadline:
            for msg in consumer.consume(100, timeout=0.2):
                if msg.error():
                    assert msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
                    continue
                out.append(msg)
        assert len(out) >= count, f"only {len(out)} of {count} records on {topic}"
        return out
    finally:
        consumer.close()


def run_state(function_id: str = "app-fn", status: str = "Running", *, event_data: dict[str, Any] | None = None,
              **changes: Any) -> dict[str, Any]:
    """A RunState record as the run owner writes it."""
    event_id = str(uuid.uuid4())
    now = now_ms()
    event = {"id": event_id, "name": "test/started", "data": event_data or {}, "user": {}, "ts": now}
    run_id = run_id_for(function_id, event_id, now)
    cmd = start_command(run_id, function_id, json.dumps(event), now, now)
    state = st.start(cmd, event_id, now, start_timeout_ms=None).state
    assert state is not None
    state = {**state, "status": status, "started_at": now, "version": 2}
    if status in ("Completed", "Failed", "Cancelled"):
        state["ended_at"] = now
    state.update(changes)
    return state


def produce_states(settings: Settings, *states: dict[str, Any]) -> None:
    producer = Producer(producer_config(settings.bootstrap_servers or ""))
    for state in states:
        producer.produce(settings.topic(t.RUNS), key=state["run_id"].encode(), value=serde.encode(RUN_STATE, state))
    assert producer.flush(20) == 0


def bearer(key: str = SIGNING_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# -- events -------------------------------------------------------------------------------------------------------


def test_post_events_produces_decodable_events_keyed_by_id(api) -> None:
    client, settings = api(event_key=EVENT_KEY)
    one = client.post(f"/e/{EVENT_KEY}", json={"name": "app/user.created", "data": {"n": 1.5, "x": [None, {}]}})
    assert one.status_code == 200, one.text
    assert one.json()["status"] == 200 and len(one.json()["ids"]) == 1
    batch = client.post(f"/e/{EVENT_KEY}", json=[
        {"name": "app/a", "id": "my-id-1", "ts": 1700000000000, "user": {"u": 1}},
        {"name": "app/b", "v": "2024-01-01"},
    ])
    assert batch.status_code == 200, batch.text
    ids = one.json()["ids"] + batch.json()["ids"]
    assert ids[1] == "my-id-1"

    records = read_topic(settings.bootstrap_servers or "", settings.topic(t.EVENTS), 3)
    by_id = {}
    for msg in records:
        record = serde.decode_as(EVENT, msg.value())
        assert msg.key().decode() == record["id"]
        by_id[record["id"]] = record
    assert set(by_id) == set(ids)
    first = by_id[ids[0]]
    assert first["name"] == "app/user.created" and json.loads(first["data"]) == {"n": 1.5, "x": [None, {}]}
    assert first["ts"] > 0
    assert by_id["my-id-1"]["ts"] == 1700000000000 and json.loads(by_id["my-id-1"]["user"]) == {"u": 1}
    assert by_id[ids[2]]["v"] == "2024-01-01"


def test_post_events_refuses_bad_key_bad_json_invalid_events_and_oversize(api) -> None:
    client, settings = api(event_key=EVENT_KEY, max_event_bytes=2048)

    wrong = client.post("/e/not-the-key", json={"name": "a"})
    assert wrong.status_code == 401 and "error" in wrong.json()

    bad_json = client.post(f"/e/{EVENT_KEY}", content=b'{"name": "a",', headers={"content-type": "application/json"})
    assert bad_json.status_code == 400
    assert "invalid JSON" in bad_json.json()["error"] and "line 1" in bad_json.json()["error"]

    no_name = client.post(f"/e/{EVENT_KEY}", json={"data": {"a": 1}})
    assert no_name.status_code == 400
    assert any(d["loc"] == ["name"] for d in no_name.json()["details"]), no_name.json()

    in_batch = client.post(f"/e/{EVENT_KEY}", json=[{"name": "ok"}, {"name": "x", "data": [1]}, 7])
    assert in_batch.status_code == 400
    locs = [d["loc"] for d in in_batch.json()["details"]]
    assert [1, "data"] in locs and [2] in locs

    big = {"name": "big", "data": {"blob": "x" * 4096}}
    too_big = client.post(f"/e/{EVENT_KEY}", json=big)
    assert too_big.status_code == 413, too_big.text

    def chunks() -> Iterator[bytes]:  # no Content-Length: the middleware must count the bytes
        body = json.dumps(big).encode()
        for i in range(0, len(body), 512):
            yield body[i:i + 512]

    chunked = client.post(f"/e/{EVENT_KEY}", content=chunks(), headers={"content-type": "application/json"})
    assert chunked.status_code == 413, chunked.text

    # nothing of the refused requests reached Kafka; a good one still does
    ok = client.post(f"/e/{EVENT_KEY}", json={"name": "fine"})
    assert ok.status_code == 200
    records = read_topic(settings.bootstrap_servers or "", settings.topic(t.EVENTS), 1, timeout=5)
    assert [serde.decode_as(EVENT, m.value())["name"] for m in records] == ["fine"]


def test_any_event_key_is_accepted_when_none_is_configured(api) -> None:
    client, _ = api()
    assert client.post("/e/whatever", json={"name": "a"}).status_code == 200


# -- runs ---------------------------------------------------------------------------------------------------------


def test_get_run_and_event_runs_from_the_runs_topic(api) -> None:
    client, settings = api(run_wait_seconds=0.5)
    state = run_state(steps=[{"id": "s1", "op": "run", "output": '{"ok":true}', "completed_at": 5}])
    other = run_state("app-other")
    produce_states(settings, state, other)

    got = client.get(f"/v1/runs/{state['run_id']}")
    assert got.status_code == 200, got.text
    data = got.json()["data"]
    assert data["run_id"] == state["run_id"] and data["function_id"] == "app-fn"
    assert data["status"] == "Running" and data["event_id"] == state["event_id"]
    assert data["steps"] == [{"id": "s1", "op": "run", "output": {"ok": True}, "completed_at": 5, "started_at": None}]

    runs = client.get(f"/v1/events/{state['event_id']}/runs").json()["data"]
    assert [r["run_id"] for r in runs] == [state["run_id"]]
    assert client.get("/v1/events/unknown/runs").json() == {"data": []}

    started = time.monotonic()
    missing = client.get("/v1/runs/01JUNKNOWNRUNID0000000000")
    assert missing.status_code == 404 and "not found" in missing.json()["error"]
    assert time.monotonic() - started >= 0.4  # it waited for the table before answering


def test_get_run_waits_for_a_run_that_is_being_created(api) -> None:
    client, settings = api(run_wait_seconds=5)
    state = run_state()
    timer = threading.Timer(0.7, produce_states, (settings, state))
    timer.start()
    try:
        got = client.get(f"/v1/runs/{state['run_id']}")
        assert got.status_code == 200, got.text
    finally:
        timer.join()


def test_newer_state_replaces_older_and_tombstone_deletes(api) -> None:
    client, settings = api(run_wait_seconds=0.2)
    state = run_state()
    produce_states(settings, state, {**state, "status": "Sleeping", "version": 3})
    table = client.app.state.runs  # type: ignore[attr-defined]
    assert table.wait_until(lambda: (table.get(state["run_id"]) or {}).get("status") == "Sleeping", 10)
    assert client.get(f"/v1/runs/{state['run_id']}").json()["data"]["status"] == "Sleeping"

    producer = Producer(producer_config(settings.bootstrap_servers or ""))
    producer.produce(settings.topic(t.RUNS), key=state["run_id"].encode(), value=None)
    assert producer.flush(10) == 0
    assert table.wait_until(lambda: table.get(state["run_id"]) is None, 10)
    assert client.get(f"/v1/runs/{state['run_id']}").status_code == 404
    assert client.get(f"/v1/events/{state['event_id']}/runs").json() == {"data": []}


def test_delete_run_sends_a_cancel_command(api) -> None:
    client, settings = api(run_wait_seconds=0.3)
    active = run_state(status="Sleeping")
    ended = run_state(status="Completed", output='"done"')
    produce_states(settings, active, ended)
    assert client.get(f"/v1/runs/{active['run_id']}").status_code == 200

    first = client.delete(f"/v1/runs/{active['run_id']}")
    assert first.status_code == 200, first.text
    assert first.json() == {"data": {"run_id": active["run_id"], "status": "Cancelling"}}
    again = client.delete(f"/v1/runs/{active['run_id']}")  # not applied yet: still accepted
    assert again.status_code == 200

    commands = [serde.decode_as(RUN_COMMAND, m.value())
                for m in read_topic(settings.bootstrap_servers or "", settings.topic(t.RUN_COMMANDS), 2)]
    for msg_cmd in commands:
        assert msg_cmd["kind"] == "cancel" and msg_cmd["reason"] == "rest"
        assert msg_cmd["run_id"] == active["run_id"] and msg_cmd["function_id"] == "app-fn"

    assert client.delete("/v1/runs/01JUNKNOWNRUNID0000000000").status_code == 404
    conflict = client.delete(f"/v1/runs/{ended['run_id']}")
    assert conflict.status_code == 409 and "Completed" in conflict.json()["error"]

    # once the owner has applied it, the run is ended and a further DELETE is a conflict
    produce_states(settings, {**active, "status": "Cancelled", "cancel_reason": "rest", "ended_at": now_ms(),
                              "version": 9})
    table = client.app.state.runs  # type: ignore[attr-defined]
    assert table.wait_until(lambda: (table.get(active["run_id"]) or {}).get("status") == "Cancelled", 10)
    assert client.delete(f"/v1/runs/{active['run_id']}").status_code == 409


# -- bulk cancellations -------------------------------------------------------------------------------------------


def test_bulk_cancellation_validation(api) -> None:
    client, _settings = api()
    now = now_ms()
    base = {"app_id": "app", "function_id": "fn"}

    def post(body: Any) -> httpx.Response:
        return client.post("/v1/cancellations", json=body)

    missing = post(base)
    assert missing.status_code == 400 and "started_before" in missing.json()["error"]
    future = post({**base, "started_before": now + 60_000})
    assert future.status_code == 400 and "future" in future.json()["error"]
    inverted = post({**base, "started_before": now, "started_after": now})
    assert inverted.status_code == 400 and "earlier" in inverted.json()["error"]
    bad_time = post({**base, "started_before": "yesterday"})
    assert bad_time.status_code == 400 and "RFC3339" in bad_time.json()["error"]
    bad_if = post({**base, "started_before": now, "if": "event.data.x =="})
    assert bad_if.status_code == 400 and "invalid CEL expression" in bad_if.json()["error"]
    wrong_var = post({**base, "started_before": now, "if": "async.data.x == 1"})
    assert wrong_var.status_code == 400 and "async" in wrong_var.json()["error"]
    no_app = post({"function_id": "fn", "started_before": now})
    assert no_app.status_code == 400 and "app_id" in no_app.json()["error"]
    extra = post({**base, "started_before": now, "unknown": 1})
    assert extra.status_code == 400
    not_object = post([base])
    assert not_object.status_code == 400

    assert client.get("/v1/cancellations").json() == {"data": []}


def test_bulk_cancellation_create_list_count_and_stop(api) -> None:
    client, settings = api()
    created = client.post("/v1/cancellations", json={
        "app_id": "app", "function_id": "fn", "started_after": "2024-01-01T00:00:00Z",
        "started_before": datetime.now(UTC).isoformat(), "if": "event.data.plan == 'free'"})
    assert created.status_code == 200, created.text
    view = created.json()["data"]
    assert view["started_after"] == 1704067200000 and view["if"] == "event.data.plan == 'free'"
    assert view["stopped_at"] is None and view["cancelled_runs"] == 0

    msgs = read_topic(settings.bootstrap_servers or "", settings.topic(t.CANCELLATIONS), 1)
    record = serde.decode_as(BULK_CANCELLATION, msgs[0].value())
    assert msgs[0].key().decode() == view["id"] == record["id"]
    assert record["if_exp"] == view["if"] and record["app_id"] == "app" and record["started_before"] == view[
        "started_before"]

    listed = client.get("/v1/cancellations").json()["data"]
    assert [c["id"] for c in listed] == [view["id"]]

    # the run owner cancels two runs with it (and one by REST): the count follows the runs table
    hit1 = run_state(status="Cancelled", cancel_reason="bulk", cancel_source=view["id"])
    hit2 = run_state(status="Cancelled", cancel_reason="bulk", cancel_source=view["id"])
    rest = run_state(status="Cancelled", cancel_reason="rest", cancel_source=None)
    produce_states(settings, hit1, hit2, rest)
    table = client.app.state.runs  # type: ignore[attr-defined]
    assert table.wait_until(lambda: table.cancelled_by(view["id"]) == 2, 10)
    assert client.get("/v1/cancellations").json()["data"][0]["cancelled_runs"] == 2

    stopped = client.delete(f"/v1/cancellations/{view['id']}")
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["data"]["stopped_at"] is not None
    listed = client.get("/v1/cancellations").json()["data"]
    assert listed[0]["stopped_at"] == stopped.json()["data"]["stopped_at"] and listed[0]["cancelled_runs"] == 2
    again = client.delete(f"/v1/cancellations/{view['id']}")  # idempotent, keeps the first stop time
    assert again.status_code == 200 and again.json()["data"]["stopped_at"] == stopped.json()["data"]["stopped_at"]

    records = [serde.decode_as(BULK_CANCELLATION, m.value())
               for m in read_topic(settings.bootstrap_servers or "", settings.topic(t.CANCELLATIONS), 2)]
    assert records[-1]["stopped_at"] is not None and records[-1]["id"] == view["id"]

    assert client.delete("/v1/cancellations/01JNOSUCHCANCELLATION0000").status_code == 404


# -- auth, health, metrics, server ----------------------------------------------------------------------------------


def test_signing_key_guards_runs_and_cancellations_but_not_ingest(api) -> None:
    client, settings = api(signing_key=SIGNING_KEY, run_wait_seconds=0.2)
    state = run_state()
    produce_states(settings, state)
    guarded = [("GET", f"/v1/runs/{state['run_id']}"), ("DELETE", f"/v1/runs/{state['run_id']}"),
               ("GET", f"/v1/events/{state['event_id']}/runs"), ("GET", "/v1/cancellations"),
               ("POST", "/v1/cancellations"), ("DELETE", "/v1/cancellations/x")]
    for method, path in guarded:
        for headers in ({}, bearer("wrong"), {"Authorization": SIGNING_KEY}, {"Authorization": "Basic abc"}):
            resp = client.request(method, path, headers=headers, json={})
            assert resp.status_code == 401, (method, path, headers, resp.text)
    assert client.get(f"/v1/runs/{state['run_id']}", headers=bearer()).status_code == 200
    assert client.get("/v1/cancellations", headers={"authorization": f"bearer {SIGNING_KEY}"}).status_code == 200
    assert client.post("/e/any", json={"name": "a"}).status_code == 200


def test_healthz_and_metrics(api, kafka_bootstrap: str) -> None:
    client, _ = api()
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    client.post("/e/k", json={"name": "counted"})
    metrics = client.get("/metrics/")
    assert metrics.status_code == 200 and "pipeline_api_events_total" in metrics.text

    # topics not created yet: the tables wait for them and the API says it is not ready
    settings = make_settings(kafka_bootstrap, create=False)
    with TestClient(create_app(settings, ready_timeout=0.2)) as cold:
        assert cold.get("/healthz").status_code == 503
        assert cold.get("/v1/cancellations").status_code == 503
        t.create_topics(AdminClient(admin_config(kafka_bootstrap)), settings)
        app = cold.app
        assert app.state.runs.wait_ready(30) and app.state.cancellations.wait_ready(30)  # type: ignore[attr-defined]
        assert cold.get("/healthz").status_code == 200


def test_start_in_thread_serves_http_and_stops(kafka_bootstrap: str) -> None:
    settings = make_settings(kafka_bootstrap, event_key=EVENT_KEY)
    server, thread = start_in_thread(settings, "127.0.0.1", 0, wait_ready=True)
    try:
        base = f"http://127.0.0.1:{bound_port(server)}"
        with httpx.Client(base_url=base, timeout=10) as http:
            assert http.get("/healthz").status_code == 200
            sent = http.post(f"/e/{EVENT_KEY}", json={"name": "over/http"})
            assert sent.status_code == 200, sent.text
            assert http.get("/metrics").status_code == 200
            oversize = http.post(f"/e/{EVENT_KEY}", content=b"x" * (settings.max_event_bytes + 1))
            assert oversize.status_code == 413
        msg = read_topic(kafka_bootstrap, settings.topic(t.EVENTS), 1)[0]
        assert serde.decode_as(EVENT, msg.value())["id"] == sent.json()["ids"][0]
    finally:
        stop(server, thread)
    assert not thread.is_alive()


def test_a_restarted_api_reads_only_what_runs_gained_since_its_store_was_written(kafka_bootstrap: str) -> None:
    """The API's run table is a state store with its read positions: a restart (same instance) reads the tail."""
    settings = make_settings(kafka_bootstrap, instance_id=f"api-{uuid.uuid4().hex[:6]}")
    states = [run_state() for _ in range(30)]
    produce_states(settings, *states)

    def started() -> TestClient:
        client = TestClient(create_app(settings, run_wait_seconds=2.0))
        client.__enter__()
        assert client.app.state.runs.wait_ready(30)  # type: ignore[attr-defined]
        return client

    first = started()
    table = first.app.state.runs  # type: ignore[attr-defined]
    assert table.wait_until(lambda: all(table.get(s["run_id"]) for s in states), 10)
    assert table.records_read == 30
    first.__exit__(None, None, None)

    later = run_state(status="Sleeping")
    produce_states(settings, later, {**states[0], "status": "Completed", "version": 5})
    second = started()
    try:
        table = second.app.state.runs  # type: ignore[attr-defined]
        assert table.wait_until(lambda: table.get(later["run_id"]) is not None, 10)
        assert table.records_read == 2  # the tail only
        assert second.get(f"/v1/runs/{states[0]['run_id']}").json()["data"]["status"] == "Completed"
        assert second.get(f"/v1/runs/{states[1]['run_id']}").status_code == 200  # from the store
        page = second.get("/v1/runs?limit=100").json()["data"]
        assert len(page) == 31
    finally:
        second.__exit__(None, None, None)
