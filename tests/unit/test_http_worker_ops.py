"""The HTTP worker's pure parts: the call it makes (URL, body, memo, signature) and how it reads the answer
into the outcome records the run owner applies."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest

from pipeline.workers.http.ops import answer_outcome, read_answer, retry_at_ms
from pipeline.workers.http.request import call_body, call_headers, call_url, memo_value, signature

SDK = {"X-Inngest-Sdk": "inngest-js:v3.54.2", "X-Inngest-Req-Version": "1"}
EVENT = {"id": "01E", "name": "user/signed.up", "data": {"userId": "u1"}, "user": {}, "ts": 5}


def inv(steps: list[dict[str, Any]] | None = None, attempt: int = 0) -> dict[str, Any]:
    return {"run_id": "01RUN", "function_id": "app-fn", "seq": 3, "attempt": attempt, "owner_partition": 1,
            "event": json.dumps(EVENT), "steps": steps or [], "dispatched_at": 1}


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def test_the_url_names_the_function_and_the_step() -> None:
    url = call_url("http://h:3000/api/inngest?fnId=app-fn&stepId=step&x=1", "app-fn", "abc")
    assert url == "http://h:3000/api/inngest?x=1&fnId=app-fn&stepId=abc"


def test_the_body_memoises_each_step_in_the_shape_the_sdk_reads() -> None:
    finished = {"name": "inngest/function.finished", "data": {"invoke_correlation_id": "r.s", "result": 7}}
    steps = [
        {"id": sha1("load"), "output": json.dumps({"data": {"n": 1}}), "error": None},  # step.run
        {"id": sha1("pause"), "output": None, "error": None},  # a sleep
        {"id": sha1("wait"), "output": json.dumps(EVENT), "error": None},  # a wait that matched: the raw event
        {"id": sha1("wait:1"), "output": "null", "error": None},  # a wait that timed out
        {"id": sha1("boom"), "output": None, "error": json.dumps({"name": "Error", "message": "no"})},
        {"id": sha1("child"), "output": json.dumps(finished), "error": None},  # an invoke's answer
    ]
    body = call_body(inv(steps, attempt=2), retries=3, disable_immediate_execution=True)
    assert body["event"] == EVENT and body["events"] == [EVENT]
    assert body["steps"] == {sha1("load"): {"data": {"n": 1}}, sha1("pause"): None, sha1("wait"): EVENT,
                             sha1("wait:1"): None, sha1("boom"): {"error": {"name": "Error", "message": "no"}},
                             sha1("child"): {"data": 7}}
    assert body["ctx"] == {"run_id": "01RUN", "attempt": 2, "max_attempts": 4, "disable_immediate_execution": True,
                           "use_api": False, "stack": {"stack": [s["id"] for s in steps], "current": 6}}
    assert "fn_id" not in body["ctx"]  # inngest-js 4 would switch to checkpointing
    assert memo_value({"id": "x", "output": None, "error": None}) is None


def test_the_signature_is_the_sdks_hmac_of_body_then_time() -> None:
    key = "signkey-test-12345678"
    sig = signature(b'{"a":1}', key, 1700000000)
    expected = hmac.new(b"12345678", b'{"a":1}' + b"1700000000", hashlib.sha256).hexdigest()
    assert sig == f"t=1700000000&s={expected}"
    assert call_headers(b"{}", None, 1)["X-Inngest-Server-Kind"] == "dev"
    assert "X-Inngest-Signature" in call_headers(b"{}", key, 1)


def outcome_of(status: int, body: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    answer = read_answer(status, {**SDK, **(headers or {})}, raw, 10_000)
    return dict(answer_outcome(inv(), answer, 9_000, 10_000, "w"))


def test_200_is_the_result_and_an_empty_body_is_null() -> None:
    out = outcome_of(200, {"ok": True})
    assert out["kind"] == "completed" and json.loads(out["output"]) == {"ok": True}
    assert json.loads(outcome_of(200, b"")["output"]) is None


def test_an_answer_not_from_an_sdk_is_a_failed_attempt() -> None:
    answer = read_answer(200, {"content-type": "text/html"}, b"<html>proxy</html>", 0)
    out = answer_outcome(inv(), answer, 0, 1, "w")
    assert out["kind"] == "error" and out["retriable"] and "NotAnSdkAnswer" in (out["error"] or "")


def test_step_run_is_stored_as_data() -> None:
    out = outcome_of(206, [{"id": sha1("load"), "op": "StepRun", "data": [1, 2], "displayName": "load"}])
    assert out["kind"] == "step" and out["step_id"] == sha1("load") and json.loads(out["output"]) == {"data": [1, 2]}


def test_step_error_retries_and_step_failed_does_not() -> None:
    op = {"id": "s", "error": {"name": "TypeError", "message": "bad", "stack": "at x"}}
    err = outcome_of(206, [{**op, "op": "StepError"}])
    assert err["kind"] == "error" and err["step_id"] == "s" and err["retriable"]
    assert json.loads(err["error"]) == {"error": "bad", "name": "TypeError", "message": "bad", "stack": "at x"}
    assert not outcome_of(206, [{**op, "op": "StepFailed"}])["retriable"]
    assert not outcome_of(206, [{**op, "op": "StepError"}], {"X-Inngest-No-Retry": "true"})["retriable"]


@pytest.mark.parametrize("op", [{"op": "Sleep", "name": "5s"},  # inngest-js: the duration in name
                                {"op": "Sleep", "name": "pause", "opts": {"duration": "5s"}}])  # inngest-py
def test_sleep_durations_from_either_sdk(op: dict[str, Any]) -> None:
    out = outcome_of(206, [{"id": "z", **op}])
    assert out["kind"] == "sleep" and out["wake_at"] == 15_000 and out["step_id"] == "z"


@pytest.mark.parametrize("op", [
    {"op": "WaitForEvent", "opts": {"event": "user/upgraded", "timeout": "1m", "if": "async.data.a == event.data.a"}},
    {"op": "WaitForEvent", "name": "user/upgraded",  # inngest-js 3: the event in name
     "opts": {"timeout": "1m", "if": "async.data.a == event.data.a"}}])
def test_wait_for_event(op: dict[str, Any]) -> None:
    out = outcome_of(206, [{"id": "w", **op}])
    assert out["kind"] == "wait" and out["wake_at"] == 70_000
    assert json.loads(out["wait"]) == {"event": "user/upgraded", "if": "async.data.a == event.data.a", "invoke": None}


def test_invoke_is_a_wait_for_the_childs_end() -> None:
    out = outcome_of(206, [{"id": "i", "op": "InvokeFunction",
                            "opts": {"function_id": "app-child", "payload": {"data": {"x": 1}}, "timeout": "1h"}}])
    spec = json.loads(out["wait"])
    assert out["kind"] == "wait" and spec["invoke"] == {"function_id": "app-child", "data": {"x": 1}, "user": {}}


def test_run_complete_ends_the_run() -> None:
    out = outcome_of(206, [{"id": "r", "op": "RunComplete", "data": {"done": 1}}])
    assert out["kind"] == "completed" and json.loads(out["output"]) == {"done": 1}


def test_several_step_results_are_one_steps_outcome() -> None:
    out = outcome_of(206, [{"id": "a", "op": "StepRun", "data": 1},
                           {"id": "b", "op": "StepError", "error": {"name": "E", "message": "m"}}])
    entries = json.loads(out["output"])
    assert out["kind"] == "steps" and entries[0] == {"id": "a", "output": json.dumps({"data": 1})}
    assert entries[1]["id"] == "b" and entries[1]["retriable"] is True


def test_function_errors_go_by_the_headers_not_the_status() -> None:
    body = {"name": "NonRetriableError", "message": "stop", "stack": "s"}
    final = outcome_of(400, body, {"X-Inngest-No-Retry": "true"})
    again = outcome_of(400, body, {"X-Inngest-No-Retry": "false"})
    assert final["kind"] == again["kind"] == "error" and not final["retriable"] and again["retriable"]
    later = outcome_of(500, body, {"X-Inngest-No-Retry": "false", "Retry-After": "30"})
    assert json.loads(later["error"])["retry_at"] == 40_000


def test_retry_after_forms() -> None:
    assert retry_at_ms("5", 1000) == 6000
    assert retry_at_ms("2026-01-01T00:00:00Z", 0) == 1_767_225_600_000
    assert retry_at_ms("Thu, 01 Jan 2026 00:00:00 GMT", 0) == 1_767_225_600_000
    assert retry_at_ms(None, 0) is None and retry_at_ms("soon", 0) is None


def test_an_unknown_operation_fails_the_attempt_for_good() -> None:
    out = outcome_of(206, [{"id": "g", "op": "AIGateway", "opts": {}}])
    assert out["kind"] == "error" and not out["retriable"] and "AIGateway" in out["error"]
