"""The events topic reads the encoding each record tells: Avro single-object, a JSON object, Confluent's wire
format; anything else is refused with what was expected."""

from __future__ import annotations

import json

import pytest

from pipeline.serde import EVENT, Serde, SerdeError
from pipeline.serde.events import read_event

SERDE = Serde()
AVRO = {"id": "e1", "name": "a/b", "data": '{"k":1}', "user": "{}", "ts": 5, "v": None}


def test_avro_records_read_as_before() -> None:
    assert read_event(SERDE, SERDE.encode(EVENT, AVRO), 99) == AVRO


def test_a_json_object_is_an_event_with_inngest_s_defaults() -> None:
    raw = json.dumps({"name": "contacts/import.requested", "data": {"importId": "x"}}).encode()
    record = read_event(SERDE, b"  \n" + raw, 1234)
    assert record == {"id": "", "name": "contacts/import.requested", "data": '{"importId":"x"}', "user": "{}",
                      "ts": 1234, "v": None}  # no id: the matcher derives it from the record; ts: the broker's
    full = {"id": "i", "name": "n", "data": {}, "user": {"u": 1}, "ts": 7, "v": "2024-01-01.1"}
    assert read_event(SERDE, json.dumps(full).encode(), 1234) == {
        "id": "i", "name": "n", "data": "{}", "user": '{"u":1}', "ts": 7, "v": "2024-01-01.1"}


@pytest.mark.parametrize(("payload", "reason"), [
    (None, "tombstone"),
    (b"", "expected an Avro single-object record"),
    (b"hello", "expected an Avro single-object record"),
    (b"[1]", "expected an Avro single-object record"),
    (b'{"name": ', "invalid JSON"),
    (b'{"data": {}}', "name: Field required"),
    (b'{"name": "n", "data": 3}', "invalid JSON event: data"),
    (b'{"name": "n", "extra": 1}', "extra: Extra inputs are not permitted"),
    (b'{"name": "n", "ts": -1}', "invalid JSON event: ts"),
    (b"\xff\xfe{", "expected an Avro single-object record"),
    (b"\x00\x00\x00\x00\x09body", "(schema id 9) needs a schema registry: set PIPELINE_SCHEMA_REGISTRY_URL"),
    (b"\x00\x01", "expected an Avro single-object record"),
])
def test_anything_else_is_refused_with_what_was_expected(payload: bytes | None, reason: str) -> None:
    with pytest.raises(SerdeError) as caught:
        read_event(SERDE, payload, 1)
    assert reason in str(caught.value)


def test_a_confluent_record_goes_through_the_registry_reader_when_there_is_one() -> None:
    seen: list[bytes] = []

    def registry(payload: bytes) -> dict[str, object]:
        seen.append(payload)
        return {"name": "from/registry", "data": {"a": 1}, "id": "r1"}

    record = read_event(SERDE, b"\x00\x00\x00\x00\x01body", 50, confluent=registry)
    assert seen == [b"\x00\x00\x00\x00\x01body"]
    assert record["name"] == "from/registry" and record["data"] == '{"a":1}' and record["ts"] == 50
