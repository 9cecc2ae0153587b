"""throttle, priority and singleton in a sync (``POST /fn/register``): read, checked like create_function,
stored in the definition and compiled back by ``synced_function`` (pure)."""

from __future__ import annotations

import json

import pytest

from pipeline.apps.register import SyncRefused, read_sync
from pipeline.sdk.synced import synced_function

from .test_http_sync import js_body


def test_the_three_options_are_read_and_compiled_back() -> None:
    body = js_body(concurrency=None, throttle={"limit": 3, "period": "10s", "key": "event.data.a", "burst": 2},
                   priority={"run": "event.data.p"}, singleton={"key": "event.data.a", "mode": "cancel"})
    (record,) = read_sync(body, 1000).functions
    spec = json.loads(record["definition"])
    assert spec["throttle"] == {"limit": 3, "period_ms": 10_000, "key": "event.data.a", "burst": 2, "strict": False}
    assert spec["singleton"] == {"key": "event.data.a", "mode": "cancel"}
    fn = synced_function(record)
    assert fn.throttle is not None and (fn.throttle.limit, fn.throttle.period_ms, fn.throttle.burst) == (3, 10_000, 2)
    assert fn.singleton is not None and fn.singleton.mode == "cancel"
    event = {"data": {"a": "x", "p": 900}}
    assert fn.priority_s(event) == 600  # clamped
    assert fn.owner_key(event) == f'{fn.id}\x1f"x"'  # one key for throttle and singleton: per key value


def test_python_nulls_are_unset() -> None:
    (record,) = read_sync(js_body(throttle=None, priority=None, singleton=None), 1000).functions
    fn = synced_function(record)
    assert fn.throttle is None and fn.priority is None and fn.singleton is None


@pytest.mark.parametrize(("key", "value", "named"), [
    ("throttle", {"limit": 1, "period": "500ms"}, "throttle"),
    ("throttle", {"limit": 0, "period": "1m"}, "throttle"),
    ("throttle", {"limit": 1, "period": "soon"}, "throttle"),
    ("singleton", {"mode": "queue"}, "singleton"),
    ("priority", {"run": 5}, "priority"),
])
def test_bad_values_are_refused_by_name(key: str, value: object, named: str) -> None:
    with pytest.raises(SyncRefused) as caught:
        read_sync(js_body(**{key: value}), 1000)
    assert named in str(caught.value)


def test_the_functions_api_shows_the_flow_settings() -> None:
    from pipeline.api.flow_settings import flow_settings as flow_start

    (record,) = read_sync(js_body(throttle={"limit": 2, "period": "10s"}, priority={"run": "event.data.p"},
                                  singleton={"mode": "skip"}), 1000).functions
    assert flow_start(synced_function(record)) == {
        "throttle": {"limit": 2, "period_ms": 10_000, "burst": 1, "key": None, "strict": False},
        "priority": {"run": "event.data.p"}, "singleton": {"mode": "skip", "key": None}}
    (plain,) = read_sync(js_body(), 1000).functions
    assert flow_start(synced_function(plain)) == {}
