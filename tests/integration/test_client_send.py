"""``client.send`` / ``send_sync`` produce to Kafka directly (real broker) and return the ids, in order."""

from __future__ import annotations

import asyncio

import pytest

import pipeline as inngest
from pipeline.kafka import topics as t
from pipeline.serde import EVENT, Serde
from pipeline.testing.helpers import await_records
from pipeline.testing.stack import Stack
from tests.e2e.apps import app

pytestmark = pytest.mark.integration


def test_send_and_send_sync_produce_events_keyed_by_id(kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with Stack(app, kafka_bootstrap, services=()) as stack:
        monkeypatch.setenv("PIPELINE_BOOTSTRAP_SERVERS", kafka_bootstrap)
        monkeypatch.setenv("PIPELINE_TOPIC_PREFIX", stack.settings.topic_prefix)
        client = inngest.Inngest(app_id="sender")
        ids = client.send_sync([inngest.Event(name="app/one", data={"n": 1}, id="evt-1"),
                                {"name": "app/two", "data": {"n": 2}}])
        more = asyncio.run(client.send(inngest.Event(name="app/three")))
        serde = Serde()
        records = await_records(kafka_bootstrap, stack.settings.topic(t.EVENTS), 3, timeout=20)
    assert ids[0] == "evt-1" and len(ids) == 2 and len(more) == 1 and ids[1] and more[0]
    decoded = {m.key().decode(): serde.decode_as(EVENT, m.value()) for m in records}
    assert set(decoded) == {*ids, *more}
    assert decoded["evt-1"]["name"] == "app/one" and decoded[ids[1]]["name"] == "app/two"
    assert all(d["ts"] > 0 for d in decoded.values())
