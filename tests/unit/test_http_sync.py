"""Reading an SDK's sync (``POST /fn/register``) into ``functions`` records, and compiling them (pure)."""

from __future__ import annotations

import json

import pytest

from pipeline.apps.register import SyncRefused, read_sync
from pipeline.protocol.functions import same_function, with_wait
from pipeline.protocol.timestr import BadTimeString, duration_ms, until_ms
from pipeline.sdk.app import Registry
from pipeline.sdk.synced import SyncedFunction, synced_function

URL = "http://127.0.0.1:3000/api/inngest"


def js_body(**fn_extra: object) -> dict[str, object]:
    """What inngest-js 3.x sends for the seed's import function (keys as it spells them)."""
    fn = {"id": "newsletter-app-import-all-contacts", "name": "import-all-contacts",
          "triggers": [{"event": "contacts/import.requested"}],
          "steps": {"step": {"id": "step", "name": "step", "runtime": {
              "type": "http", "url": f"{URL}?fnId=newsletter-app-import-all-contacts&stepId=step"},
              "retries": {"attempts": 3}}},
          "cancel": [{"event": "contacts/import.cancelled", "if": "async.data.importId == event.data.importId",
                      "timeout": "1h30m"}],
          "concurrency": 5, **fn_extra}
    return {"url": URL, "deployType": "ping", "appName": "newsletter-app", "sdk": "inngest-js:v3.54.2", "v": "0.1",
            "framework": "nodejs", "functions": [fn]}


def py_body() -> dict[str, object]:
    """What inngest-py 0.5 sends: ``appname``, ``deploy_type``, and every option key, unset ones null."""
    fn = {"batchEvents": None, "cancel": None, "concurrency": [{"limit": 2, "key": "event.data.user", "scope": None}],
          "debounce": None, "id": "py-app-hello", "idempotency": None, "name": "hello", "priority": None,
          "rateLimit": None, "singleton": None, "throttle": None, "timeouts": {"start": None, "finish": "10m"},
          "steps": {"step": {"id": "step", "name": "step", "retries": None,
                             "runtime": {"type": "http", "url": f"{URL}?fnId=py-app-hello&stepId=step"}}},
          "triggers": [{"event": "app/hello", "expression": "event.data.n > 1"}]}
    return {"appname": "py-app", "deploy_type": "ping", "framework": "fast_api", "sdk": "py:v0.5.19", "url": URL,
            "v": "0.1", "functions": [fn], "capabilities": {}}


def test_the_typescript_spelling_is_read() -> None:
    sync = read_sync(js_body(), 1000)
    assert sync.app_id == "newsletter-app" and sync.sdk == "inngest-js:v3.54.2"
    (record,) = sync.functions
    spec = json.loads(record["definition"])
    assert record["id"] == "newsletter-app-import-all-contacts" and record["url"].endswith("stepId=step")
    assert spec["retries"] == 3
    assert spec["cancel"] == [{"event": "contacts/import.cancelled",
                               "if": "async.data.importId == event.data.importId", "timeout_ms": 5_400_000}]
    assert spec["concurrency"] == [{"limit": 5, "key": None}]
    fn = synced_function(record)
    assert isinstance(fn, SyncedFunction) and fn.id == record["id"] and fn.fn_id == "import-all-contacts"
    assert fn.cancels[0].join_path == "data.importId" and fn.cancels[0].timeout_ms == 5_400_000
    assert fn.concurrency[0].limit == 5 and fn.retries == 3


def test_the_python_spelling_is_read_and_nulls_are_unset_options() -> None:
    (record,) = read_sync(py_body(), 1000).functions
    spec = json.loads(record["definition"])
    assert spec["retries"] == 4  # no retries given: the SDKs' default
    assert spec["timeouts"] == {"start_ms": None, "finish_ms": 600_000}
    fn = synced_function(record)
    assert fn.triggers[0].expr is not None and fn.concurrency[0].key is not None
    assert fn.timeouts is not None and fn.timeouts.finish_ms() == 600_000


@pytest.mark.parametrize(("key", "value", "named"), [
    ("concurrency", [{"limit": 1, "scope": "account"}], "concurrency scope 'account'"),
])
def test_an_option_not_built_is_refused_by_name(key: str, value: object, named: str) -> None:
    with pytest.raises(SyncRefused) as caught:
        read_sync(js_body(**{key: value}), 1000)
    assert named in str(caught.value) and "newsletter-app-import-all-contacts" in str(caught.value)


def test_every_problem_is_named_not_only_the_first() -> None:
    body = js_body(debounce={"period": "500ms"}, triggers=[{"cron": "every minute"}])
    with pytest.raises(SyncRefused) as caught:
        read_sync(body, 1000)
    assert len(caught.value.problems) == 2 and "cron" in str(caught.value) and "debounce" in str(caught.value)


@pytest.mark.parametrize("trigger", [{"cron": "*/5 * * * *"},  # inngest-js; inngest-py adds null keys
                                     {"cron": "*/5 * * * *", "event": None, "expression": None}])
def test_a_cron_trigger_in_either_spelling_compiles_to_a_schedule(trigger: dict[str, object]) -> None:
    (record,) = read_sync(js_body(triggers=[trigger, {"event": "app/also"}]), 1000).functions
    fn = synced_function(record)
    assert [c.expression for c in fn.crons] == ["*/5 * * * *"] and [t.event for t in fn.triggers] == ["app/also"]


def test_a_function_id_must_be_composite() -> None:
    body = js_body()
    body["functions"][0]["id"] = "import-all-contacts"  # type: ignore[index]
    with pytest.raises(SyncRefused, match="composite id"):
        read_sync(body, 1000)


def test_a_re_sync_is_the_same_function_and_learned_waits_add_once() -> None:
    (a,) = read_sync(js_body(), 1000).functions
    (b,) = read_sync(js_body(), 2000).functions
    assert same_function(a, b) and a["synced_at"] != b["synced_at"]
    learned = with_wait(a, "user/upgraded")
    assert learned is not None and with_wait(learned, "user/upgraded") is None
    fn = synced_function(learned)
    assert [w.event for w in fn.waits] == ["user/upgraded"] and fn.wait_paths("anything") == (None,)


def test_the_registry_swaps_synced_functions_and_keeps_code_ids() -> None:
    (record,) = read_sync(js_body(), 1000).functions
    registry = Registry([])
    seen: list[int] = []
    registry.on_change(lambda: seen.append(len(registry.by_id)))
    before = registry.by_id
    registry.put([synced_function(record)])
    assert record["id"] in registry.by_id and record["id"] not in before  # replaced, never changed in place
    registry.put([], [record["id"]])
    assert registry.by_id == {} and seen == [1, 0]


@pytest.mark.parametrize(("text", "ms"), [("30s", 30_000), ("1h30m", 5_400_000), ("500ms", 500), ("2d", 172_800_000),
                                          ("1w", 604_800_000), ("1.5s", 1500), (2000, 2000)])
def test_time_strings(text: object, ms: int) -> None:
    assert duration_ms(text) == ms


@pytest.mark.parametrize("bad", ["", "5", "s", "5x", "5s ago", True, None])
def test_bad_time_strings(bad: object) -> None:
    with pytest.raises(BadTimeString):
        duration_ms(bad)


def test_a_sleep_until_a_date() -> None:
    assert until_ms("2026-01-01T00:00:00Z", 0) == 1_767_225_600_000
    assert until_ms("5s", 1000) == 6000


def test_one_sends_cancels_are_written_after_its_triggers() -> None:
    from pipeline.api.arrival import phases

    signals = frozenset({"contacts/import.cancelled"})
    t, c = "contacts/import.requested", "contacts/import.cancelled"
    assert phases([t, c], signals) == [range(0, 1), range(1, 2)]
    assert phases([t, t, t], signals) == [range(0, 3)]  # triggers alone: one write, as before
    assert phases([c, t, t, c, c], signals) == [range(0, 1), range(1, 3), range(3, 5)]
    assert phases([], signals) == []


def test_seeded_event_ids_match_the_inngest_servers() -> None:
    import base64

    from pipeline.api.seeded import apply_seed, seeded_id

    entropy = bytes(range(10))
    seed = f"1700000000000,{base64.b64encode(entropy).decode()}"
    first, second = seeded_id(seed, 0), seeded_id(seed, 1)
    assert first is not None and second is not None and first != second
    assert first.startswith("01HF7YAT00")  # the time part: 1700000000000 ms
    # the index is added to the entropy's last four bytes, big-endian (Inngest's SeededIDFromString)
    from ulid import ULID

    assert ULID.from_str(second).bytes[6:] == bytes(range(6)) + (0x06070809 + 1).to_bytes(4, "big")
    assert seeded_id("not a seed", 0) is None and seeded_id("12,AAAA", 0) is None
    items: list[object] = [{"name": "a"}, {"name": "b", "id": "mine"}, "not an event"]
    apply_seed(items, seed)
    assert items[0] == {"name": "a", "id": first} and items[1] == {"name": "b", "id": "mine"}


def test_an_sdk_syncs_with_the_key_or_its_hash_in_either_spelling() -> None:
    import hashlib

    from pipeline.api.register import sdk_authorized

    key = "signkey-prod-12345678"
    hashed = "b2ed992186a5cb19f6668aade821f502c1d00970dfd0e35128d51bac4649916c"  # the SDK spec's example
    assert hashlib.sha256(bytes.fromhex("12345678")).hexdigest() == hashed
    assert sdk_authorized(key, f"Bearer signkey-prod-{hashed}")  # inngest-js
    assert sdk_authorized(key, f"Bearer {hashed}")  # inngest-py
    assert sdk_authorized(key, f"Bearer {key}")
    assert not sdk_authorized(key, "Bearer undefined") and not sdk_authorized(key, None)
    assert sdk_authorized(None, "Bearer undefined")  # dev mode: inngest-js sends this


def test_dev_needs_an_app_or_a_url() -> None:
    from typer.testing import CliRunner

    from pipeline.cli import app

    result = CliRunner().invoke(app, ["dev"])
    assert result.exit_code == 2 and "-u URL" in result.output
    result = CliRunner().invoke(app, ["run", "worker"])
    assert result.exit_code == 2 and "--no-app" in result.output


@pytest.mark.parametrize("fn_extra", [
    {"steps": {"step": []}}, {"steps": []}, {"triggers": [{"event": "a", "expression": 5}]},
    {"cancel": [{"event": "x", "if": 3}]}, {"cancel": {"event": "x"}}, {"concurrency": [{"limit": 1, "key": []}]},
    {"concurrency": "5"}, {"triggers": "x"}, {"timeouts": {"finish": "soon"}},
])
def test_malformed_functions_are_refused_not_crashed_on(fn_extra: dict[str, object]) -> None:
    with pytest.raises(SyncRefused):
        read_sync(js_body(**fn_extra), 1000)


def test_debounce_and_batches_sync_with_either_spelling_and_the_same_ranges() -> None:
    (record,) = read_sync(js_body(debounce={"period": "5s", "key": "event.data.id", "timeout": "1m"}), 1000).functions
    fn = synced_function(record)
    assert fn.debounce is not None and (fn.debounce.period_ms, fn.debounce.timeout_ms) == (5000, 60_000)
    keyed = f"{fn.id}\x1f7" if not fn.concurrency else fn.id  # a limit keyed otherwise: one owner per function
    assert fn.owner_key({"data": {"id": 7}}) == keyed
    (record,) = read_sync(js_body(batchEvents={"maxSize": 10, "timeout": "5s", "if": "event.data.bulk == true"},
                                  cancel=None), 1000).functions
    fn = synced_function(record)
    assert fn.batch is not None and (fn.batch.max_size, fn.batch.timeout_ms) == (10, 5000)
    assert fn.batch.batches({"data": {"bulk": True}}) and not fn.batch.batches({"data": {}})
    (record,) = read_sync(js_body(batch_events={"max_size": 3, "timeout": 2000}, cancel=None), 1000).functions
    assert synced_function(record).batch is not None
    for bad, named in (({"debounce": {"period": "8d"}}, "7 days"), ({"batchEvents": {"maxSize": 1, "timeout": "5s"}},
                       "batchEvents"), ({"batchEvents": {"maxSize": 5, "timeout": "5s"}, "debounce": {"period": "5s"}},
                       "cannot be combined with cancel, debounce")):
        with pytest.raises(SyncRefused, match=named):
            read_sync(js_body(**bad), 1000)
