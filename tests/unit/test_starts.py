"""The matcher's start records (pipeline/protocol/starts.py) are byte for byte what ``start_records`` and
``Serde.encode`` give, for functions with and without cancels, concurrency keys, replays, odd text and times."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

import pipeline
from pipeline.protocol.commands import start_records
from pipeline.protocol.ids import EventRunIds, run_id_for
from pipeline.protocol.starts import StartCodec
from pipeline.serde import CANCEL_LISTENER, RUN_COMMAND, Serde, SerdeError

app = pipeline.Inngest(app_id="starts")


@app.create_function(fn_id="plain", trigger=pipeline.TriggerEvent(event="shop/order"))
def _plain(ctx: pipeline.Context) -> None:
    return None


@app.create_function(fn_id="cancelled", trigger=pipeline.TriggerEvent(event="shop/order"), cancel=[
    pipeline.Cancel(event="shop/cancel", if_exp="async.data.id == event.data.id"),
    pipeline.Cancel(event="shop/stop"),
])
def _cancelled(ctx: pipeline.Context) -> None:
    return None


@app.create_function(fn_id="limited-é", trigger=pipeline.TriggerEvent(event="shop/order"),
                     concurrency=pipeline.Concurrency(limit=2, key="event.data.id"))
def _limited(ctx: pipeline.Context) -> None:
    return None


def _event(rng: random.Random, i: int) -> dict[str, Any]:
    return {"id": rng.choice([f"id-{i}", "01KC" + "Z" * 22, "é€𝄞", "", "x" * 300]),
            "name": "shop/order", "data": {"id": rng.choice(["a", 7, "ü"])}, "user": {},
            "ts": rng.choice([0, 1, 1765147000123 + i, (1 << 48) - 1, (1 << 48) + 5])}


@pytest.mark.parametrize("replay_of", [None, "01KCREPLAYED0000000000000"])
def test_encoded_starts_are_start_records_byte_for_byte(replay_of: str | None) -> None:
    serde = Serde()
    codec = StartCodec(serde)
    rng = random.Random(11)
    for i in range(300):
        event = _event(rng, i)
        event_json = rng.choice(['{"data":{}}', "é" * rng.randint(0, 200), ""])
        received_at, now = rng.choice([0, 1765147000999 + i, 2**62]), rng.choice([5, 1765147001000 + i])
        starts = codec.event(event, event_json, received_at, now, 3, 5, replay_of)
        for fn in app.functions:
            run_id = run_id_for(fn.id, event["id"], event["ts"])
            expected = start_records(fn, event, event_json, run_id, received_at, now, 3, 5, replay_of)
            got = starts.records(fn)
            assert [r[:3] + r[4:] for r in got] == [r[:3] + r[4:] for r in expected]
            assert got[0][3] == serde.encode(RUN_COMMAND, expected[0][3])  # the start command, already encoded
            assert [r[3] for r in got[1:]] == [r[3] for r in expected[1:]]  # listeners: records, encoded on send
            assert all(r[2] == CANCEL_LISTENER for r in got[1:])


def test_event_run_ids_are_run_id_for() -> None:
    rng = random.Random(5)
    for _ in range(2000):
        event_id = "".join(rng.choice("ab\x00é9Z") for _ in range(rng.randint(0, 40)))
        ts = rng.choice([-5, 0, 1765147000123, (1 << 48) - 1, 1 << 49, rng.randrange(1 << 48)])
        ids = EventRunIds(event_id, ts)
        for fn_id in ("a-x", "", "app-é", "bench-f0001"):
            assert ids(fn_id) == run_id_for(fn_id, event_id, ts)


def test_fields_encoder_parts_join_into_the_record() -> None:
    serde = Serde()
    record = {"event_id": "é1", "offset": 2**40, "first_seen": -3}
    parts = [serde.fields_encoder("pipeline.EventSeen", "event_id", "event_id")(record),
             serde.fields_encoder("pipeline.EventSeen", "offset")(record)]
    assert serde.header("pipeline.EventSeen") + b"".join(parts) == serde.encode("pipeline.EventSeen", record)
    with pytest.raises(SerdeError):
        serde.fields_encoder("pipeline.EventSeen", "first_seen", "event_id")  # out of order
    with pytest.raises(SerdeError):
        serde.fields_encoder("pipeline.EventSeen", "nope")


def test_all_records_are_each_function_s_records_in_order() -> None:
    codec = StartCodec(Serde())
    event = {"id": "E1", "name": "shop/order", "data": {"id": "a"}, "user": {}, "ts": 1765147000123}
    one = codec.event(event, '{"data":{"id":"a"}}', 1765147000200, 1765147000300, 3, 5)
    assert one.all_records(app.functions) == [r for fn in app.functions for r in one.records(fn)]
    assert len(one.all_records(app.functions)) == len(app.functions) + 2  # "cancelled" has two listeners


def test_a_run_command_schema_whose_fields_moved_is_refused_at_start_up(tmp_path: Path) -> None:
    """The pieces follow RunCommand's field order: a schema with a field between function_id and ts must stop the
    codec before it writes records its readers would misread."""
    from pipeline.serde import Catalog
    from pipeline.serde.catalog import schemas_dir

    schema = json.loads((schemas_dir() / "run_command.avsc").read_text())
    at = [f["name"] for f in schema["fields"]].index("ts")
    schema["fields"].insert(at, {"name": "tenant", "type": "string", "default": ""})
    (tmp_path / "run_command.avsc").write_text(json.dumps(schema))
    with pytest.raises(SerdeError, match="no longer begin"):
        StartCodec(Serde(Catalog.load(tmp_path)))
