"""``POST /e``'s fast path against the Event model it stands in for, and the batch ULIDs."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ulid import ULID

from pipeline.api.edge import ApiError
from pipeline.api.ingest import UlidBatches, _fast_records, _model_records
from pipeline.serde import EVENT, Serde
from pipeline.serde.models import Event

NOW = 1_750_000_000_000

json_leaf = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=8)
json_value = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=8)
# values of every field, each of the right type, the wrong type, or a coercible one ("12" or 1.0 for ts)
field_values = {
    "name": st.sampled_from(["a", "app/user.created", "", " ", "\t\n", "x" * 512, "x" * 513, " a "]) | json_value,
    "data": st.dictionaries(st.text(max_size=4), json_value, max_size=3) | json_value,
    "user": st.dictionaries(st.text(max_size=4), json_value, max_size=3) | json_value,
    "id": st.sampled_from(["", "evt-1", "01J9Z4E7Q8V6W3K5N2M1P0R9ST"]) | json_value,
    "ts": st.sampled_from([0, 1, -1, 2**63 - 1, 2**63, 1.0, 1.5, "12", True, None]) | st.integers(-5, 2**64),
    "v": st.sampled_from([None, "2024-01-01", ""]) | json_value,
    "extra": json_value,
}
event_like = st.fixed_dictionaries({}, optional=field_values)
item = event_like | json_value


def _canon(record: dict[str, Any], filled_id: bool, filled_ts: bool) -> dict[str, Any]:
    return {**record, "id": "<ulid>" if filled_id else record["id"], "ts": "<now>" if filled_ts else record["ts"]}


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
@given(items=st.lists(item, max_size=4))
def test_the_fast_path_takes_only_what_the_model_takes_with_the_same_records(items: list[Any]) -> None:
    fast = _fast_records(items, NOW)
    try:
        model = _model_records(items, batch=True)
    except ApiError:
        assert fast is None, "the fast path took a batch that the model refuses"
        return
    if fast is None:  # an event of a kind the fast path leaves to the model (coerced values)
        return
    assert len(fast) == len(model)
    for f, m, raw in zip(fast, model, items, strict=True):
        filled_id, filled_ts = not raw.get("id"), not raw.get("ts")
        assert _canon(f, filled_id, filled_ts) == _canon(m, filled_id, filled_ts)
        if filled_ts:
            assert f["ts"] == NOW
        Serde().encode(EVENT, f)  # and it encodes


def test_the_usual_events_take_the_fast_path() -> None:
    items = [{"name": "a"}, {"name": "b", "data": {"x": [1, {"y": None}], "é": "ü"}, "user": {"u": 1}},
             {"name": "c", "id": "evt-1", "ts": 1700000000000, "v": "2024-01-01"}, {"name": "d", "v": None}]
    fast = _fast_records(items, NOW)
    assert fast is not None
    assert [r["name"] for r in fast] == ["a", "b", "c", "d"]
    assert fast[1]["data"] == json.dumps(items[1]["data"], separators=(",", ":"))
    assert fast[1]["user"] == '{"u":1}' and fast[0]["data"] == fast[0]["user"] == "{}"
    assert fast[2]["id"] == "evt-1" and fast[2]["ts"] == 1700000000000 and fast[2]["v"] == "2024-01-01"
    assert fast[0]["ts"] == NOW and fast[3]["v"] is None
    assert Event.model_validate(items[1]).with_defaults().to_record()["data"] == fast[1]["data"]


@pytest.mark.parametrize("bad", [
    {"data": {}}, {"name": ""}, {"name": "  "}, {"name": "x" * 513}, {"name": 1}, {"name": "a", "data": []},
    {"name": "a", "data": None}, {"name": "a", "ts": -1}, {"name": "a", "ts": 2**63}, {"name": "a", "other": 1},
    {"name": "a", "id": 5}, {"name": "a", "v": 1}, {"name": "a", "user": "u"}, 7, "a", None, [],
])
def test_anything_unusual_is_left_to_the_model(bad: Any) -> None:
    assert _fast_records([{"name": "ok"}, bad], NOW) is None


def test_batch_ulids_are_ulids_of_the_time_and_ascending() -> None:
    ids = UlidBatches()
    first = ids.take(500, NOW)
    second = ids.take(3, NOW)  # the same millisecond: goes on from the last
    third = ids.take(2, NOW + 1)
    every = first + second + third
    assert len(set(every)) == len(every) and every == sorted(every)
    for eid in every:
        parsed = ULID.from_str(eid)
        assert str(parsed) == eid and len(eid) == 26
    assert {ULID.from_str(e).milliseconds for e in first + second} == {NOW}
    assert ULID.from_str(third[0]).milliseconds == NOW + 1
    assert [int.from_bytes(ULID.from_str(e).bytes[6:], "big") for e in first[:3]] == \
        list(range(int.from_bytes(ULID.from_str(first[0]).bytes[6:], "big"), int.from_bytes(
            ULID.from_str(first[0]).bytes[6:], "big") + 3))
    back = ids.take(1, NOW - 5)  # a clock stepping back still gives a later id
    assert back[0] > third[-1]


@pytest.mark.parametrize("last", [(5 << 10) + 1015, (1 << 79) + 1023, (1 << 80) - 4])
def test_batch_ulids_are_python_ulids_of_consecutive_values(last: int) -> None:
    ids = UlidBatches()
    ids._ts, ids._last = NOW, last  # go on from here: across a run of 1,024 values, or past the end
    batch = ids.take(2050, NOW)
    first = int.from_bytes(ULID.from_str(batch[0]).bytes[6:], "big")
    ts = ULID.from_str(batch[0]).milliseconds
    assert (ts, first) == ((NOW, last + 1) if last + 2050 < 1 << 80 else (NOW + 1, first))
    assert batch == [str(ULID.from_bytes(ts.to_bytes(6, "big") + (first + i).to_bytes(10, "big")))
                     for i in range(2050)]
