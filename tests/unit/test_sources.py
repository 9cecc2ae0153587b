"""Sources: a record of a user's topic -> the event it stands for (pure mapping, no Kafka)."""

from __future__ import annotations

import json

import pytest

from pipeline import Inngest
from pipeline.sdk.app import Registry
from pipeline.sdk.sources import Source, SourceError
from pipeline.sources.mapping import MappingError, RecordView, SourceMapping


def _view(value: bytes | None, *, key: bytes | None = b"k1", offset: int = 7,
          headers: list[tuple[str, bytes | None]] | None = None) -> RecordView:
    return RecordView(topic="orders", partition=2, offset=offset, timestamp=1_700_000_000_000, key=key, value=value,
                      headers=headers or [])


def test_a_json_record_maps_to_an_event_with_a_stable_id_from_its_coordinates() -> None:
    mapping = SourceMapping(Source("orders", topic="orders", name="'shop/order.' + record.value.kind",
                                   data="{'order': record.value.id, 'key': record.key, 'src': record.headers.src}"))
    view = _view(json.dumps({"kind": "created", "id": 42}).encode(), headers=[("src", b"erp")])
    event = mapping.event(view)
    assert event is not None
    assert event["name"] == "shop/order.created"
    assert json.loads(event["data"]) == {"order": 42, "key": "k1", "src": "erp"}
    assert event["ts"] == 1_700_000_000_000 and len(event["id"]) == 26
    again = mapping.event(view)
    assert again is not None and again["id"] == event["id"]  # a replay of the same record: the same id
    other = mapping.event(_view(view.value, offset=8, headers=[("src", b"erp")]))
    assert other is not None and other["id"] != event["id"]


def test_an_id_expression_gives_the_event_id_and_if_filters() -> None:
    mapping = SourceMapping(Source("o", topic="orders", name="'shop/order'", id="'order-' + string(record.value.id)",
                                   if_exp="record.value.amount > 10"))
    assert mapping.event(_view(b'{"id": 1, "amount": 5}')) is None
    event = mapping.event(_view(b'{"id": 1, "amount": 50}'))
    assert event is not None and event["id"] == "order-1"


def test_plain_strings_are_text_values() -> None:
    mapping = SourceMapping(Source("logs", topic="logs", name="'log/line'", data="{'line': record.value}",
                                   value_format="string"))
    event = mapping.event(_view(b'{"not": "parsed"}'))
    assert event is not None and json.loads(event["data"]) == {"line": '{"not": "parsed"}'}
    auto = SourceMapping(Source("logs2", topic="logs", name="'log/line'", data="{'line': record.value}"))
    event = auto.event(_view(b"plain text"))
    assert event is not None and json.loads(event["data"]) == {"line": "plain text"}


@pytest.mark.parametrize(("source", "value", "reason"), [
    (Source("s", topic="t", name="record.value.missing"), b"{}", "no such key"),
    (Source("s", topic="t", name="record.value.n"), b'{"n": 3}', "not an event name"),
    (Source("s", topic="t", name="'a'", data="record.value.list"), b'{"list": [1]}', "not an object"),
    (Source("s", topic="t", name="'a'", value_format="json"), b"not json", "not JSON"),
    (Source("s", topic="t", name="'a'"), b"\xff\xfe", "not UTF-8"),
    (Source("s", topic="t", name="'a'", id="record.value.id"), b'{"id": true}', "not a text or number"),
])
def test_a_failing_mapping_says_which_expression_and_why(source: Source, value: bytes, reason: str) -> None:
    with pytest.raises(MappingError) as caught:
        SourceMapping(source).event(_view(value))
    assert reason in str(caught.value)


def test_bad_definitions_fail_when_the_app_loads() -> None:
    with pytest.raises(SourceError, match="name"):
        Source("s", topic="t", name="record.value.(")
    with pytest.raises(SourceError, match="value_format"):
        Source("s", topic="t", name="'a'", value_format="xml")  # type: ignore[arg-type]
    with pytest.raises(SourceError, match="slug"):
        Source("has space", topic="t", name="'a'")
    client = Inngest(app_id="shop")
    client.create_source("orders", topic="orders", name="'shop/order'")
    with pytest.raises(SourceError, match="already registered"):
        client.create_source("orders", topic="other", name="'x'")
    assert [s.source_id for s in Registry([client]).sources] == ["orders"]


def test_lag_counts_what_the_group_has_not_committed() -> None:
    from pipeline.api.sources import lag_of

    assert lag_of(-1001, 0, 10) == 10  # nothing committed yet: the whole log
    assert lag_of(4, 0, 10) == 6
    assert lag_of(2, 5, 10) == 5  # committed below the log's start (deleted records): from the start
    assert lag_of(10, 0, 10) == 0
