"""Avro single-object encoding, schema resolution by fingerprint, and the pydantic faces."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from pipeline.serde import EVENT, RUN_STATE, Serde, SerdeError, default_catalog
from pipeline.serde.avro import MAGIC
from pipeline.serde.models import Event, event_dict_to_record, event_record_to_dict

serde = Serde()


def test_event_round_trip_keeps_any_json() -> None:
    data = {"n": 1, "f": 1.5, "big": 2**62, "s": "ü", "nested": {"l": [1, None, True, {"x": []}]}, "e": {}}
    ev = Event(name="a/b", data=data, user={"id": 7}).with_defaults()
    payload = serde.encode(EVENT, ev.to_record())
    assert payload[:2] == MAGIC
    name, record = serde.decode(payload)
    assert name == EVENT
    back = Event.from_record(record)
    assert back == ev
    assert back.data == data


def test_header_carries_fingerprint_of_current_schema() -> None:
    payload = serde.encode(EVENT, Event(name="x", id="1", ts=1).to_record())
    assert payload[2:10] == default_catalog().schema(EVENT).fingerprint


def test_old_writer_schema_decodes_into_current_reader() -> None:
    """A record written with history/event-v0 (no user, no v) reads with the current schema's defaults."""
    old = next(e for e in default_catalog().by_fingerprint.values() if e.name == EVENT and not e.current)
    from io import BytesIO

    from fastavro import schemaless_writer

    buf = BytesIO()
    buf.write(MAGIC + old.fingerprint)
    schemaless_writer(buf, old.parsed, {"id": "e1", "name": "old/event", "data": '{"a":1}', "ts": 5})
    name, record = serde.decode(buf.getvalue())
    assert name == EVENT
    assert record == {"id": "e1", "name": "old/event", "data": '{"a":1}', "user": "{}", "ts": 5, "v": None}


def test_a_step_outcome_of_the_previous_schema_reads_without_a_carried_sleep() -> None:
    """StepOutcome v1 (history/step_outcome-v1: ``final``, no ``sleep_step``/``sleep_ms``), as older workers and
    the topics' existing records have it, reads with both null: the owner applies it as before."""
    import json
    from io import BytesIO
    from pathlib import Path

    from fastavro import parse_schema, schemaless_writer

    from pipeline.serde.catalog import schemas_dir

    v1 = json.loads((Path(schemas_dir()) / "history" / "step_outcome-v1.avsc").read_text())
    old = next(e for e in default_catalog().by_fingerprint.values()
               if e.name == "pipeline.StepOutcome" and not e.current and "final" in json.dumps(e.parsed)
               and "sleep_step" not in json.dumps(e.parsed))
    fields = {"run_id": "R", "function_id": "f", "seq": 1, "attempt": 0, "kind": "step", "step_id": "a",
              "output": "1", "wake_at": None, "events": None, "error": None, "retriable": True, "started_at": 1,
              "finished_at": 2, "worker": "w", "wait": None, "final": None}
    buf = BytesIO()
    buf.write(MAGIC + old.fingerprint)
    schemaless_writer(buf, parse_schema(v1), fields)
    name, record = serde.decode(buf.getvalue())
    assert name == "pipeline.StepOutcome"
    assert record == {**fields, "sleep_step": None, "sleep_ms": None}


@pytest.mark.parametrize("payload, reason", [
    (b"", "missing C3 01 header"),
    (b"{\"json\": 1}", "missing C3 01 header"),
    (MAGIC + b"\x00" * 8 + b"abc", "unknown schema fingerprint"),
])
def test_undecodable_bytes_raise_clear_errors(payload: bytes, reason: str) -> None:
    with pytest.raises(SerdeError, match=reason):
        serde.decode(payload)


def test_truncated_body_is_a_serde_error() -> None:
    payload = serde.encode(EVENT, Event(name="x", id="1", ts=1, data={"k": "v" * 50}).to_record())
    with pytest.raises(SerdeError, match="cannot decode"):
        serde.decode(payload[:20])


def test_record_that_does_not_fit_schema() -> None:
    with pytest.raises(SerdeError, match="does not fit"):
        serde.encode(EVENT, {"id": 1, "name": None})


def test_decode_as_rejects_other_record_types() -> None:
    payload = serde.encode(EVENT, Event(name="x", id="1", ts=1).to_record())
    with pytest.raises(SerdeError, match=r"expected a pipeline\.RunState record"):
        serde.decode_as(RUN_STATE, payload)


def test_event_model_errors_are_clear() -> None:
    with pytest.raises(ValidationError, match="name"):
        Event.model_validate({"data": {}})
    with pytest.raises(ValidationError, match="data"):
        Event.model_validate({"name": "x", "data": [1, 2]})
    with pytest.raises(ValidationError, match="blank"):
        Event.model_validate({"name": "   "})


def test_with_defaults_fills_id_and_ts_only_when_missing() -> None:
    ev = Event(name="x").with_defaults()
    assert len(ev.id) == 26 and ev.ts > 0
    kept = Event(name="x", id="mine", ts=3).with_defaults()
    assert (kept.id, kept.ts) == ("mine", 3)


def test_dict_and_record_faces_agree() -> None:
    ev = {"id": "1", "name": "n", "data": {"a": [1]}, "user": {}, "ts": 9}
    assert event_record_to_dict(event_dict_to_record(ev)) == ev
    assert json.loads(event_dict_to_record(ev)["data"]) == {"a": [1]}
