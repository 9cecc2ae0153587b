"""inngest-py's units and error types: int durations are milliseconds, retries default to 4,
NonRetriableError(message, quiet=), RetryAfterError(message, retry_after) schedules the next attempt."""

from __future__ import annotations

import datetime
import json
import logging

import pytest
from pydantic import ValidationError

import pipeline
from pipeline.protocol.invocations import memo_step
from pipeline.run_owner import state as st

from .test_sdk import _state, invoke

NOW = 1_700_000_000_000


def _fn(handler):  # type: ignore[no-untyped-def]
    app = pipeline.Inngest(app_id="a")
    app.create_function(fn_id="f", trigger=pipeline.TriggerEvent(event="x"))(handler)
    return app.functions[-1]


@pytest.mark.parametrize("duration,ms", [(2000, 2000), (datetime.timedelta(seconds=3), 3000), (0, 0)])
def test_step_sleep_reads_ints_as_milliseconds(duration, ms) -> None:  # type: ignore[no-untyped-def]
    fn = _fn(lambda ctx: ctx.step.sleep("nap", duration))
    out = invoke(fn, _state(), NOW, logging.getLogger("t"))
    assert out.kind == "sleep" and out.wake_at == NOW + ms


@pytest.mark.parametrize("bad", [1.5, True, "2s", -1])
def test_step_sleep_refuses_what_is_not_a_duration(bad) -> None:  # type: ignore[no-untyped-def]
    fn = _fn(lambda ctx: ctx.step.sleep("nap", bad))
    out = invoke(fn, _state(), NOW, logging.getLogger("t"))
    assert out.kind == "error" and "step.sleep('nap')" in out.error["message"]


def test_cancel_and_timeouts_read_ints_as_milliseconds() -> None:
    assert pipeline.Cancel(event="c", match="data.k", timeout=60_000).timeout_ms() == 60_000
    assert pipeline.Cancel(event="c", match="data.k", timeout=datetime.timedelta(minutes=2)).timeout_ms() == 120_000
    timeouts = pipeline.Timeouts(start=1500, finish=datetime.timedelta(seconds=9))
    assert (timeouts.start_ms(), timeouts.finish_ms()) == (1500, 9000)
    with pytest.raises(ValidationError, match="int of milliseconds"):
        pipeline.Cancel(event="c", match="data.k", timeout=1.5)


def test_retries_default_to_four_as_in_inngest() -> None:
    assert _fn(lambda ctx: None).retries == 4


def test_non_retriable_error_takes_quiet_and_quiet_errors_are_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    def loud(ctx):  # type: ignore[no-untyped-def]
        raise pipeline.NonRetriableError("bad input")

    def quiet(ctx):  # type: ignore[no-untyped-def]
        raise pipeline.NonRetriableError("expected", quiet=True)

    log = logging.getLogger("fn-test")
    with caplog.at_level(logging.WARNING, logger="fn-test"):
        loud_out = invoke(_fn(loud), _state(), NOW, log)
        quiet_out = invoke(_fn(quiet), _state(), NOW, log)
    assert loud_out.retriable is False and quiet_out.retriable is False
    assert [r.getMessage() for r in caplog.records] == ["function raised NonRetriableError: bad input"]


def test_retry_after_error_schedules_the_next_attempt_when_the_user_said() -> None:
    def limited(ctx):  # type: ignore[no-untyped-def]
        ctx.step.run("call", lambda: (_ for _ in ()).throw(pipeline.RetryAfterError("429", 30_000)))

    out = invoke(_fn(limited), _state(), NOW, logging.getLogger("t"))
    assert out.kind == "error" and out.retriable
    retry_at = out.error["retry_at"]
    state = {**_state(), "status": "Running", "version": 1}
    tr = st.failed_attempt(state, out.error, retries=4, now_ms=retry_at - 30_000, backoff_ms=1000)
    assert tr.state is not None and tr.state["wake_at"] == retry_at  # not the 1 s backoff
    past = st.failed_attempt(state, {**out.error, "retry_at": 5}, retries=4, now_ms=NOW, backoff_ms=1000)
    assert past.state is not None and past.state["wake_at"] == NOW
    at = pipeline.RetryAfterError("later", datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC))
    assert at.retry_at_ms == int(datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC).timestamp() * 1000)
    assert json.loads(json.dumps(out.error))["name"] == "RetryAfterError"


def test_ctx_logger_says_each_line_once_across_replays(caplog: pytest.LogCaptureFixture) -> None:
    def handler(ctx):  # type: ignore[no-untyped-def]
        ctx.logger.info("before")
        ctx.step.run("a", lambda: 1)
        ctx.logger.info("between")
        ctx.step.run("b", lambda: 2)
        ctx.logger.info("after")
        return "done"

    fn = _fn(handler)
    log = logging.getLogger("replay-test")
    steps: list[dict] = []
    with caplog.at_level(logging.INFO, logger="replay-test"):
        for _ in range(3):  # as the owner re-invokes after each step
            out = invoke(fn, _state(steps), NOW, log)
            if out.kind == "step":
                steps.append({"id": out.step_id, "output": out.output})
            if out.kind == "completed" or getattr(out, "final", None) is not None:
                break  # the last step came back with the result (a look-ahead pass): no third invocation
    assert len(steps) == 2 and out.kind == "step" and json.loads(out.final) == "done"
    assert [r.getMessage() for r in caplog.records] == ["before", "between", "after"]


def test_a_step_failed_for_good_is_stored_and_raises_step_error_on_the_next_invocation() -> None:
    state = {**_state(), "status": "Running", "version": 1, "attempt": 1, "steps": []}
    error = {"error": "boom", "message": "boom", "name": "ValueError", "stack": "Traceback ..."}
    tr = st.failed_attempt(state, error, retries=1, now_ms=NOW, backoff_ms=1000, step_id="charge")
    assert tr.ready and tr.state is not None and tr.state.get("finishing") is None
    assert tr.state["steps"][-1]["op"] == "error" and tr.state["attempt"] == 0
    memo = memo_step(tr.state["steps"][-1])
    assert memo["output"] is None and json.loads(memo["error"])["name"] == "ValueError"
    handler_failed = st.failed_attempt(state, error, retries=1, now_ms=NOW, backoff_ms=1000)
    assert handler_failed.state is not None and handler_failed.state["finishing"] == "Failed"

    seen: list[pipeline.StepError] = []

    def handler(ctx):  # type: ignore[no-untyped-def]
        try:
            ctx.step.run("charge", lambda: 1)
        except pipeline.StepError as err:
            seen.append(err)
            return "caught"

    out = invoke(_fn(handler), {**_state(), "steps": [memo]}, NOW, logging.getLogger("t"))
    assert out.kind == "completed" and out.output == '"caught"'
    assert (seen[0].name, seen[0].message, seen[0].stack) == ("ValueError", "boom", "Traceback ...")


def test_a_look_ahead_pass_returns_the_result_with_the_last_step_but_never_runs_a_new_step() -> None:
    ran: list[str] = []

    def handler(ctx):  # type: ignore[no-untyped-def]
        a = ctx.step.run("a", lambda: ran.append("a") or 1)
        if ctx.event.data.get("more"):
            ctx.step.run("b", lambda: ran.append("b") or 2)
        return a + 10

    fn = _fn(handler)
    log = logging.getLogger("ahead-test")
    last = invoke(fn, _state([]), NOW, log)
    assert last.kind == "step" and last.step_id == "a" and json.loads(last.final) == 11 and ran == ["a"]
    more = dict(_state([]), event=json.dumps({"id": "E", "name": "x", "data": {"more": True}, "user": {}, "ts": 1}))
    first = invoke(fn, more, NOW, log)
    assert first.kind == "step" and first.final is None and ran == ["a", "a"]  # b was not run ahead


def test_a_look_ahead_pass_carries_the_sleep_that_follows_a_step_but_not_a_sleep_until(
        caplog: pytest.LogCaptureFixture) -> None:
    def handler(ctx):  # type: ignore[no-untyped-def]
        ctx.step.run("load", lambda: 3)
        ctx.logger.info("loaded")
        ctx.step.sleep("pause", 30_000)
        ctx.step.run("save", lambda: 4)
        return "done"

    def until(ctx):  # type: ignore[no-untyped-def]
        ctx.step.run("load", lambda: 3)
        ctx.step.sleep_until("later", datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC))

    fn = _fn(handler)
    log = logging.getLogger("ahead-sleep-test")
    with caplog.at_level(logging.INFO, logger="ahead-sleep-test"):
        out = invoke(fn, _state([]), NOW, log)
    assert (out.kind, out.step_id, out.sleep_step, out.sleep_ms, out.final) == ("step", "load", "pause", 30_000, None)
    assert [r.getMessage() for r in caplog.records] == ["loaded"]  # said once: no next invocation will
    # the woken run's next invocation does not sleep again: it runs the next step
    woke = invoke(fn, _state([{"id": "load", "output": "3"}, {"id": "pause", "output": None}]), NOW, log)
    assert (woke.kind, woke.step_id, woke.sleep_step) == ("step", "save", None) and json.loads(woke.final) == "done"
    # a point in time is left to the next invocation (its clock says it)
    later = invoke(_fn(until), _state([]), NOW, log)
    assert (later.kind, later.step_id, later.sleep_step, later.sleep_ms) == ("step", "load", None, None)
    assert later.wake_at is None


def test_an_async_handlers_look_ahead_pass_carries_the_sleep_too() -> None:
    async def handler(ctx):  # type: ignore[no-untyped-def]
        await ctx.step.run("load", lambda: 3)
        await ctx.step.sleep("pause", datetime.timedelta(seconds=2))
        return "done"

    out = invoke(_fn(handler), _state([]), NOW, logging.getLogger("t"))
    assert (out.kind, out.step_id, out.sleep_step, out.sleep_ms) == ("step", "load", "pause", 2000)
