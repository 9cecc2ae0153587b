"""The schema registry reader's pure parts: which records go to it, what its decoded values become, and what it
refuses before asking any registry (tests/e2e/test_registry.py runs it against a real one)."""

from __future__ import annotations

import datetime
import decimal
import json
import uuid
from typing import Any

import pytest

from pipeline.config import Settings
from pipeline.sdk.sources import Source
from pipeline.serde import Serde, SerdeError
from pipeline.serde.events import read_event
from pipeline.serde.registry import ConfluentAvro, confluent_reader, jsonable, schema_id
from pipeline.sources.mapping import MappingError, RecordView, SourceMapping, decode_value

WIRE = b"\x00" + (258).to_bytes(4, "big") + b"\x02x"


class _Reader:
    """Stands in for the registry decode (a plain callable is the hook's whole contract)."""

    def __init__(self, value: Any = None, error: Exception | None = None) -> None:
        self.value, self.error = value, error
        self.calls: list[bytes] = []

    def __call__(self, payload: bytes) -> Any:
        self.calls.append(payload)
        if self.error is not None:
            raise self.error
        return self.value


def test_schema_id_is_the_four_bytes_after_the_magic_byte() -> None:
    assert schema_id(WIRE) == 258


def test_decoded_avro_values_become_json_values() -> None:
    value = {"when": datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC), "day": datetime.date(2026, 1, 2),
             "price": decimal.Decimal("12.50"), "uid": uuid.UUID(int=1), "raw": b"\x00\xff", "list": [1, (2, 3)],
             "nested": {"ok": True, "none": None, "f": 1.5}}
    out = jsonable(value)
    assert out == {"when": "2026-01-02T03:04:05+00:00", "day": "2026-01-02", "price": "12.50",
                   "uid": "00000000-0000-0000-0000-000000000001", "raw": "\x00\xff", "list": [1, [2, 3]],
                   "nested": {"ok": True, "none": None, "f": 1.5}}
    json.dumps(out)  # every value has a JSON form
    with pytest.raises(SerdeError, match="no JSON form"):
        jsonable({"x": object()})


def test_the_reader_refuses_what_is_not_the_wire_format_without_asking_the_registry() -> None:
    reader = ConfluentAvro("http://127.0.0.1:1", wait_s=0)
    for payload in (b"\x00\x00\x01", b"{}", b"\xc3\x01abcdefgh"):
        with pytest.raises(SerdeError, match="not Confluent's wire format"):
            reader(payload)
    assert reader.waits == 0


def test_no_reader_without_the_setting() -> None:
    assert confluent_reader(Settings(schema_registry_url=None)) is None
    reader = confluent_reader(Settings(schema_registry_url="http://registry:8081"), wait_s=3)
    assert isinstance(reader, ConfluentAvro) and reader.wait_s == 3


def test_an_events_topic_record_in_the_wire_format_goes_to_the_reader() -> None:
    reader = _Reader({"name": "shop/order.created", "data": {"id": 1}})
    record = read_event(Serde(), WIRE, 1_700_000_000_000, reader)
    assert reader.calls == [WIRE]
    assert record["name"] == "shop/order.created" and json.loads(record["data"]) == {"id": 1}
    assert record["ts"] == 1_700_000_000_000 and record["id"] == ""  # the matcher derives the id
    with pytest.raises(SerdeError, match="must be an object"):
        read_event(Serde(), WIRE, 0, _Reader("just text"))


def test_a_source_value_in_the_wire_format_is_decoded_by_auto_and_avro_formats() -> None:
    reader = _Reader({"kind": "paid", "id": 9})
    assert decode_value(WIRE, "auto", reader) == {"kind": "paid", "id": 9}
    assert decode_value(WIRE, "avro", reader) == {"kind": "paid", "id": 9}
    assert decode_value(b'{"a": 1}', "auto", reader) == {"a": 1}  # JSON stays JSON
    assert len(reader.calls) == 2
    with pytest.raises(MappingError, match="PIPELINE_SCHEMA_REGISTRY_URL"):
        decode_value(WIRE, "avro", None)
    with pytest.raises(MappingError, match="not in Confluent's wire format"):
        decode_value(b'{"a": 1}', "avro", reader)
    with pytest.raises(MappingError, match="schema id 258 is unknown"):
        decode_value(WIRE, "auto", _Reader(error=SerdeError("schema id 258 is unknown")))


def test_a_source_maps_a_decoded_avro_record() -> None:
    mapping = SourceMapping(Source("orders", topic="orders", name="'shop/order.' + record.value.kind",
                                   data="{'order': record.value.id}", value_format="avro"),
                            _Reader({"kind": "paid", "id": 9}))
    event = mapping.event(RecordView(topic="orders", partition=0, offset=3, timestamp=1, key=None, value=WIRE,
                                     headers=[]))
    assert event is not None and event["name"] == "shop/order.paid" and json.loads(event["data"]) == {"order": 9}
