"""The app-syncs record: keyed by app id, else URL; nothing to key for a body that names neither."""

from pipeline.protocol.app_syncs import record_key, sync_record
from pipeline.serde import APP_SYNC, Serde


def test_a_refusal_is_kept_with_its_problems_and_keyed_by_app() -> None:
    body = {"appname": "py-app", "url": "http://a/api/inngest", "sdk": "py:v0.5", "functions": [{}]}
    record = sync_record(body, at=5, status=400, functions=1, problems=["function 'py-app-x': debounce: not built yet"])
    assert record is not None and record_key(record) == "py-app"
    assert record["ok"] is False and record["sdk"] == "py:v0.5" and record["functions"] == 1
    assert Serde().decode_as(APP_SYNC, Serde().encode(APP_SYNC, record)) == record


def test_keyed_by_url_without_an_app_and_skipped_without_either() -> None:
    record = sync_record({"url": "http://a/api/inngest"}, at=1, status=400, problems=["appName: required"])
    assert record is not None and record_key(record) == "http://a/api/inngest"
    assert sync_record(["not", "a", "sync"], at=1, status=400) is None
    assert sync_record({"functions": []}, at=1, status=400) is None
