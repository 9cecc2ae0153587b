"""The pure parts of the HTTP API: key checks, bulk-cancellation windows and times, the body size limit."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from pydantic import ValidationError

from pipeline.api import auth
from pipeline.api.bodies import BodySizeLimit
from pipeline.api.bulk import (
    MAX_FUTURE_MS,
    CancellationRequest,
    cancellation_record,
    cancellation_view,
    to_ms,
    validate_if,
    validate_window,
)
from pipeline.config import Settings
from pipeline.expr import ExprError

NOW = 1_750_000_000_000


# -- auth ---------------------------------------------------------------------------------------------------------


def test_keys_equal_is_exact() -> None:
    assert auth.keys_equal("abc", "abc")
    assert not auth.keys_equal("abd", "abc")
    assert not auth.keys_equal("ab", "abc")
    assert not auth.keys_equal("abcd", "abc")
    assert not auth.keys_equal(None, "abc")
    assert not auth.keys_equal("", "abc")
    assert not auth.keys_equal("ǎbc", "abc")  # non-ASCII input does not raise


@pytest.mark.parametrize("header,token", [
    ("Bearer k1", "k1"), ("bearer k1", "k1"), ("BEARER   k1  ", "k1"), ("Bearer", None), ("Bearer ", None),
    ("Basic k1", None), ("k1", None), ("", None), (None, None),
])
def test_bearer_token(header: str | None, token: str | None) -> None:
    assert auth.bearer_token(header) == token


def test_signing_key_required_only_when_configured() -> None:
    closed = Settings(signing_key="sk")
    assert auth.signing_key_ok(closed, "Bearer sk")
    assert not auth.signing_key_ok(closed, "Bearer sk2")
    assert not auth.signing_key_ok(closed, "sk")
    assert not auth.signing_key_ok(closed, None)
    assert auth.signing_key_ok(Settings(signing_key=None), None)
    assert auth.signing_key_ok(Settings(signing_key=""), None)


def test_event_key_required_only_when_configured() -> None:
    assert auth.event_key_ok(Settings(event_key="ek"), "ek")
    assert not auth.event_key_ok(Settings(event_key="ek"), "other")
    assert auth.event_key_ok(Settings(event_key=None), "anything")


def test_open_keys_are_warned_about_once(caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(event_key=None, signing_key=None)
    logger = logging.getLogger("test.api.auth")
    auth._warned.clear()
    with caplog.at_level(logging.WARNING, logger="test.api.auth"):
        assert len(auth.warn_if_open(settings, logger)) == 2
        auth.warn_if_open(settings, logger)
    assert len([r for r in caplog.records if r.name == "test.api.auth"]) == 2
    assert auth.open_warnings(Settings(event_key="a", signing_key="b")) == []


# -- times and windows ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value,ms", [
    (1704067200000, 1704067200000),
    ("1704067200000", 1704067200000),
    ("2024-01-01T00:00:00Z", 1704067200000),
    ("2024-01-01T00:00:00.250Z", 1704067200250),
    ("2024-01-01T01:00:00+01:00", 1704067200000),
    ("2024-01-01T00:00:00", 1704067200000),  # naive = UTC
    (None, None),
])
def test_to_ms(value: Any, ms: int | None) -> None:
    assert to_ms(value) == ms


@pytest.mark.parametrize("value", [True, 1.5, "yesterday", "2024-13-01T00:00:00Z", [1]])
def test_to_ms_refuses_what_it_would_have_to_guess(value: Any) -> None:
    with pytest.raises(ValueError):
        to_ms(value)


def test_window_accepts_past_and_near_future_bounds() -> None:
    validate_window(NOW, None, NOW)
    validate_window(NOW + MAX_FUTURE_MS, None, NOW)
    validate_window(NOW - 10, NOW - 20, NOW)
    validate_window(NOW, 0, NOW)


def test_window_refuses_far_future_and_inverted_bounds() -> None:
    with pytest.raises(ValueError, match="future"):
        validate_window(NOW + MAX_FUTURE_MS + 1, None, NOW)
    with pytest.raises(ValueError, match="earlier"):
        validate_window(NOW - 10, NOW - 10, NOW)
    with pytest.raises(ValueError, match="earlier"):
        validate_window(NOW - 10, NOW, NOW)
    with pytest.raises(ValueError, match="negative"):
        validate_window(NOW, -1, NOW)


def test_cancellation_request_parses_both_time_forms_and_the_if_alias() -> None:
    req = CancellationRequest.model_validate({"app_id": "app", "function_id": "fn",
                                              "started_before": "2024-01-01T00:00:00Z",
                                              "started_after": 1704000000000, "if": "event.data.x == 1"})
    assert (req.started_before, req.started_after, req.if_) == (1704067200000, 1704000000000, "event.data.x == 1")
    assert CancellationRequest.model_validate({"app_id": "a", "function_id": "f", "started_before": 1,
                                               "if": "  "}).if_ is None


@pytest.mark.parametrize("body", [
    {"function_id": "f", "started_before": 1},
    {"app_id": "a", "started_before": 1},
    {"app_id": "a", "function_id": "f"},
    {"app_id": "", "function_id": "f", "started_before": 1},
    {"app_id": "a", "function_id": "f", "started_before": "soon"},
    {"app_id": "a", "function_id": "f", "started_before": 1, "extra": True},
])
def test_cancellation_request_refuses_incomplete_bodies(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        CancellationRequest.model_validate(body)


def test_if_must_compile_over_event_only() -> None:
    validate_if(None)
    validate_if("event.data.plan == 'free' && event.data.n > 3")
    with pytest.raises(ExprError):
        validate_if("event.data.plan ==")
    with pytest.raises(ExprError):
        validate_if("async.data.plan == 'free'")


def test_record_and_view_round_trip_the_request() -> None:
    req = CancellationRequest.model_validate({"app_id": "a", "function_id": "f", "started_before": NOW,
                                              "if": "event.data.x == 1"})
    record = cancellation_record(req, NOW + 1, "01HZZZ")
    assert record == {"id": "01HZZZ", "app_id": "a", "function_id": "f", "started_after": None,
                      "started_before": NOW, "if_exp": "event.data.x == 1", "created_at": NOW + 1, "stopped_at": None}
    view = cancellation_view(record, 3)
    assert view["if"] == "event.data.x == 1" and view["cancelled_runs"] == 3 and "if_exp" not in view


# -- body size limit ------------------------------------------------------------------------------------------------


def _call(limit: int, chunks: list[bytes], headers: list[tuple[bytes, bytes]]) -> tuple[int, bytes]:
    """Drive BodySizeLimit around an app that reads the whole body and echoes its length."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        size = 0
        while True:
            message = await receive()
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(size).encode()})

    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(BodySizeLimit(app, limit)({"type": "http", "headers": headers}, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def test_body_limit_by_content_length_and_by_bytes_read() -> None:
    assert _call(10, [b"12345"], [(b"content-length", b"5")]) == (200, b"5")
    status, body = _call(10, [b"x" * 11], [(b"content-length", b"11")])
    assert status == 413 and json.loads(body)["status"] == 413
    assert _call(10, [b"x" * 6, b"x" * 6], [])[0] == 413  # chunked, no Content-Length
    assert _call(10, [b"x" * 4, b"x" * 6], [])[0] == 200
    assert _call(10, [b"x"], [(b"content-length", b"1")])[0] == 200
    assert _call(10, [b"x"], [(b"content-length", b"1"), (b"x", b"y")])[0] == 200
    assert _call(10, [b"x" * 20], [(b"content-length", b"3")])[0] == 413  # a lying header does not help
    assert _call(10, [b""], [(b"content-length", b"abc")])[0] == 400


# -- bad requests: a JSON 4xx, never a 500 or a traceback (no broker: the lifespan is not run) ----------------------


def _client(**settings: Any) -> Any:
    from fastapi.testclient import TestClient

    from pipeline.api.app import create_app

    app = create_app(Settings(bootstrap_servers="127.0.0.1:1", event_key=None, signing_key=None, **settings))
    return app, TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize("path", ["/e/key", "/v1/cancellations"])
@pytest.mark.parametrize("body,problem", [
    (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
    (b'{"name": "a", "data": {"n": ' + b"1" * 5000 + b"}}", "invalid JSON"),  # over Python's int digit limit
    (b"\xff\xfe{", "invalid JSON"),
])
def test_undecodable_bodies_are_400(path: str, body: bytes, problem: str) -> None:
    _, client = _client()
    r = client.post(path, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["status"] == 400 and problem in r.json()["error"]
    assert "Traceback" not in r.text


def test_unknown_routes_and_methods_answer_in_the_error_shape() -> None:
    _, client = _client()
    missing = client.get("/v2/nothing")
    assert missing.status_code == 404 and missing.json() == {"error": "Not Found", "status": 404}
    wrong = client.put("/v1/cancellations")
    assert wrong.status_code == 405 and wrong.json()["status"] == 405 and "allow" in wrong.headers


def test_an_unexpected_failure_is_a_bare_json_500() -> None:
    app, client = _client()

    class Broken:
        async def send(self, records: Any) -> Any:
            raise RuntimeError("internal detail /srv/secret")

    app.state.writer = Broken()
    r = client.post("/e/key", json={"name": "a"})
    assert r.status_code == 500
    assert r.json() == {"error": "internal server error", "status": 500}
    assert "secret" not in r.text and "Traceback" not in r.text


@pytest.mark.parametrize("body,problem", [
    (b'{"name": "a", "ts": 9223372036854775808}', "ts"),  # one past int64: was an OverflowError in serde
    (b'{"name": "a", "ts": -1}', "ts"),
    (b'{"name": "a\\ud800"}', "surrogate"),  # a lone surrogate escape: not Unicode, and broke the error page
    (b'{"name": "a", "id": "\\udfff"}', "surrogate"),
])
def test_inputs_found_by_fuzzing_are_400(body: bytes, problem: str) -> None:
    _, client = _client()
    r = client.post("/e/key", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert problem in r.text


def test_a_bulk_cancellation_with_a_lone_surrogate_or_a_huge_negative_time_is_400() -> None:
    _, client = _client()
    for body in (b'{"app_id": "\\ud834", "function_id": "f", "started_before": 1}',
                 b'{"app_id": "a", "function_id": "f", "started_before": -9223372036854775809}'):
        r = client.post("/v1/cancellations", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400, r.text


def test_options_and_405_name_every_method_that_the_path_serves() -> None:
    _, client = _client()
    options = client.options("/v1/runs/01ABC")
    assert options.status_code == 204 and options.headers["allow"] == "DELETE, GET, OPTIONS"
    wrong = client.post("/v1/runs/01ABC")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "DELETE, GET, OPTIONS"


def test_openapi_declares_the_request_bodies_and_the_error_codes() -> None:
    _, client = _client()
    paths = client.get("/openapi.json").json()["paths"]
    assert "requestBody" in paths["/e/{event_key}"]["post"]
    assert "requestBody" in paths["/v1/cancellations"]["post"]
    assert {"400", "401", "413"} <= set(paths["/e/{event_key}"]["post"]["responses"])
    assert {"404", "409"} <= set(paths["/v1/runs/{run_id}"]["delete"]["responses"])


def test_run_list_time_filters_far_outside_any_time_are_clamped_not_a_500() -> None:
    from pipeline.api.runs import _MS_BOUND, _clamp, _cursor

    assert _clamp(-25954745334343917568) == -_MS_BOUND and _clamp(10**30) == _MS_BOUND and _clamp(5) == 5
    assert _clamp(None) is None
    assert _cursor(f"{-(10**30)}:run") == (-_MS_BOUND, "run")
