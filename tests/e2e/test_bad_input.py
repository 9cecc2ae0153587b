"""Bad input never stops a service: it goes to the dead-letter topic with the reason, and work goes on."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer

from pipeline.serde import EVENT, RUN_COMMAND, Serde
from pipeline.serde.avro import MAGIC
from pipeline.testing.helpers import await_records
from pipeline.testing.stack import Stack

from .apps import app

pytestmark = pytest.mark.integration


def test_matcher_dead_letters_every_kind_of_bad_event_and_keeps_going(kafka_bootstrap: str) -> None:
    serde = Serde()
    with Stack(app, kafka_bootstrap, max_event_bytes=4096) as stack:
        events = stack.settings.topic("events")
        producer = Producer({"bootstrap.servers": kafka_bootstrap})
        bad = {
            "undecodable": b"\x07\x01not avro at all",
            "unknown-schema": MAGIC + b"\xff" * 8 + b"\x02x",
            "wrong-record": serde.encode(RUN_COMMAND, {"kind": "cancel", "run_id": "r", "function_id": "f", "ts": 1}),
            "invalid-shape": serde.encode(EVENT, {"id": "e", "name": "test/wild.x", "data": "[1, 2]", "user": "{}",
                                                  "ts": 1, "v": None}),
            "oversized": serde.encode(EVENT, {"id": "big", "name": "test/wild.x", "data": '{"x": "%s"}' % ("y" * 5000),
                                              "user": "{}", "ts": 1, "v": None}),
        }
        for key, value in bad.items():
            producer.produce(events, key=key, value=value, partition=0)
        assert producer.flush(10) == 0
        stack.send("test/wild.ok", {}, id="good", partition=0)
        stack.wait_run(lambda r: r["event_id"] == "good" and r["status"] == "Completed")
        dead = await_records(kafka_bootstrap, stack.settings.topic("dead-letter"), 5, timeout=20)
    reasons = {m.key().decode(): dict((k, v.decode()) for k, v in m.headers()) for m in dead}
    assert set(reasons) == set(bad)
    assert "expected an Avro single-object record" in reasons["undecodable"]["dlq.reason"]
    assert "unknown schema fingerprint" in reasons["unknown-schema"]["dlq.reason"]
    assert "expected a pipeline.Event record" in reasons["wrong-record"]["dlq.reason"]
    assert "must be JSON objects" in reasons["invalid-shape"]["dlq.reason"]
    assert "exceeds the 4096-byte limit" in reasons["oversized"]["dlq.reason"]
    for headers in reasons.values():
        assert headers["dlq.source.topic"] == events and headers["dlq.service"] == "matcher"
        assert headers["dlq.source.partition"] == "0" and headers["dlq.source.offset"].isdigit()
    assert {m.value() for m in dead} == set(bad.values())  # the original bytes, untouched


def test_a_step_output_too_large_to_store_fails_the_run_instead_of_wedging_it(kafka_bootstrap: str) -> None:
    with Stack(app, kafka_bootstrap) as stack:
        stack.send("test/huge", {})
        failed = stack.wait_run(lambda r: r["function_id"] == "e2e-huge" and r["status"] == "Failed")
        assert "OutputTooLarge" in failed["error"]
        stack.send("test/wild.after", {}, id="after-huge")  # the executor keeps going
        stack.wait_run(lambda r: r["event_id"] == "after-huge" and r["status"] == "Completed")
