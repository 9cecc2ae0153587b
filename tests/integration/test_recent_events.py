"""The recent-events ring behind ``GET /v1/events`` (the dev UI's stream), against a real broker: it keeps the
records undecoded and decodes the ones a page shows, newest first, system events marked."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import Producer

from pipeline.kafka import topics as t
from pipeline.kafka.client import producer_config
from pipeline.serde import EVENT
from pipeline.testing.helpers import until
from tests.integration.test_api import api, make_settings, serde  # noqa: F401 - the fixture

pytestmark = pytest.mark.integration


def test_the_event_stream_shows_the_newest_events_first_decoded(api) -> None:  # noqa: F811 - the fixture
    client, settings = api()
    sent = client.post("/e/k", json=[{"name": "app/one", "data": {"n": 1}}, {"name": "app/two", "id": "evt-2"}])
    assert sent.status_code == 200, sent.text
    producer = Producer(producer_config(settings.bootstrap_servers or ""))
    system = {"id": "sys-1", "name": "inngest/function.finished", "data": "{}", "user": "{}", "ts": 5, "v": None}
    producer.produce(settings.topic(t.SYSTEM_EVENTS), key=b"sys-1", value=serde.encode(EVENT, system))
    producer.produce(settings.topic(t.EVENTS), key=b"junk", value=b"not avro")  # left out of the page
    assert producer.flush(20) == 0

    def page() -> list[dict[str, Any]]:
        events = client.get("/v1/events?limit=10").json()["data"]
        return events if len(events) == 3 else []

    events = until(page, 20, "three events on the page", every=0.05)
    by_id = {ev["id"]: ev for ev in events}
    ids = sent.json()["ids"]
    assert set(by_id) == {*ids, "sys-1"}
    assert by_id[ids[0]]["data"] == {"n": 1} and by_id[ids[0]]["name"] == "app/one" and by_id["evt-2"]["user"] == {}
    assert by_id["sys-1"]["system"] is True and by_id["evt-2"]["system"] is False
    assert all(ev["received_at"] > 0 and ev["runs"] == [] for ev in events)
    # newest first, across topics: the system event was produced last, whichever fetch brought it in first
    assert [ev["received_at"] for ev in events] == sorted((ev["received_at"] for ev in events), reverse=True)
    assert len(client.get("/v1/events?limit=1").json()["data"]) == 1
