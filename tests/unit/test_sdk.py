"""Function definitions are validated and compiled when the app loads; steps are memoized."""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
from types import SimpleNamespace

import pytest

import pipeline
from pipeline.workers.invoke import run_async, run_sync


def invoke(fn: pipeline.Function, inv: dict, now_ms: int, log: logging.Logger) -> SimpleNamespace:
    """Run one invocation as a worker does and give the outcome's fields (error decoded)."""
    if fn.is_async:
        out = asyncio.run(run_async(fn, inv, log, now_ms=now_ms))
    else:
        out = run_sync(fn, inv, log, now_ms=now_ms)
    out["error"] = json.loads(out["error"]) if out["error"] else None
    return SimpleNamespace(**out)


def test_function_id_is_app_slug_plus_fn_id() -> None:
    app = pipeline.Inngest(app_id="newsletter-app")

    @app.create_function(fn_id="import-all-contacts", trigger=pipeline.TriggerEvent(event="a"))
    def f(ctx: pipeline.Context) -> None:
        return None

    assert [fn.id for fn in app.functions] == ["newsletter-app-import-all-contacts"]


def test_invalid_expression_is_refused_naming_function_field_and_expression() -> None:
    app = pipeline.Inngest(app_id="a")
    with pytest.raises(pipeline.DefinitionError) as err:
        app.create_function(fn_id="bad", trigger=pipeline.TriggerEvent(event="x", expression="event.data.( =="))(
            lambda ctx: None)
    text = str(err.value)
    assert "'a-bad'" in text and "trigger expression" in text and "event.data.( ==" in text
    with pytest.raises(pipeline.DefinitionError, match=r"cancel\[0\] if_exp 'evnt.data.x == async.data.x'"):
        app.create_function(fn_id="bad2", trigger=pipeline.TriggerEvent(event="x"),
                            cancel=[pipeline.Cancel(event="c", if_exp="evnt.data.x == async.data.x")])(lambda ctx: None)


def test_at_most_five_cancel_entries() -> None:
    app = pipeline.Inngest(app_id="a")
    with pytest.raises(pipeline.DefinitionError, match="at most 5"):
        app.create_function(fn_id="f", trigger=pipeline.TriggerEvent(event="x"),
                            cancel=[pipeline.Cancel(event=f"c{i}") for i in range(6)])(lambda ctx: None)


def test_match_is_shorthand_for_equality() -> None:
    assert pipeline.Cancel(event="c", match="data.id").expression() == "event.data.id == async.data.id"
    with pytest.raises(ValueError, match="either match or if_exp"):
        pipeline.Cancel(event="c", match="data.id", if_exp="true")


def test_wildcard_trigger_only_at_the_end() -> None:
    pipeline.TriggerEvent(event="app/user.*")
    with pytest.raises(ValueError, match="only at the end"):
        pipeline.TriggerEvent(event="app/*.created")


def _state(steps: list[dict] | None = None) -> dict:
    ev = {"id": "E", "name": "x", "data": {"n": 2}, "user": {}, "ts": 1}
    return {"run_id": "R", "function_id": "a-f", "event": json.dumps(ev), "attempt": 0, "steps": steps or [],
            "seq": 1, "owner_partition": 0, "dispatched_at": 0}


def test_steps_memoize_and_stop_at_the_first_new_step() -> None:
    app = pipeline.Inngest(app_id="a")
    calls: list[str] = []

    @app.create_function(fn_id="f", trigger=pipeline.TriggerEvent(event="x"))
    def f(ctx: pipeline.Context) -> int:
        one = ctx.step.run("s", lambda: calls.append("one") or 1)
        two = ctx.step.run("s", lambda: calls.append("two") or ctx.event.data["n"])  # repeated id -> "s:1"
        ctx.step.sleep("nap", datetime.timedelta(seconds=5))
        return one + two

    fn = app.functions[0]
    log = logging.getLogger("t")
    first = invoke(fn, _state(), 1000, log)
    assert (first.kind, first.step_id, first.output) == ("step", "s", "1")
    second = invoke(fn, _state([{"id": "s", "output": "1"}]), 1000, log)
    assert (second.kind, second.step_id, second.output) == ("step", "s:1", "2")
    third = invoke(fn, _state([{"id": "s", "output": "1"}, {"id": "s:1", "output": "2"}]), 1000, log)
    assert (third.kind, third.step_id, third.wake_at) == ("sleep", "nap", 6000)
    done = invoke(fn, _state([{"id": "s", "output": "1"}, {"id": "s:1", "output": "2"},
                              {"id": "nap", "output": None}]), 1000, log)
    assert (done.kind, done.output) == ("completed", "3")
    assert calls == ["one", "two"]  # memoized steps never ran again


def test_async_handlers_and_errors() -> None:
    app = pipeline.Inngest(app_id="a")

    @app.create_function(fn_id="f", trigger=pipeline.TriggerEvent(event="x"))
    async def f(ctx: pipeline.Context) -> str:
        async def fetch() -> str:
            await asyncio.sleep(0)
            return "ok"

        value = await ctx.step.run("fetch", fetch)
        await ctx.step.run("boom", lambda: 1 / 0)
        return value

    fn = app.functions[0]
    log = logging.getLogger("t")
    assert invoke(fn, _state(), 1, log).output == '"ok"'
    failed = invoke(fn, _state([{"id": "fetch", "output": '"ok"'}]), 1, log)
    assert failed.kind == "error" and failed.step_id == "boom" and failed.error["name"] == "ZeroDivisionError"


def test_non_serializable_step_output_fails_without_retry() -> None:
    app = pipeline.Inngest(app_id="a")

    @app.create_function(fn_id="f", trigger=pipeline.TriggerEvent(event="x"))
    def f(ctx: pipeline.Context) -> None:
        ctx.step.run("obj", object)

    out = invoke(app.functions[0], _state(), 1, logging.getLogger("t"))
    assert out.kind == "error" and not out.retriable and "not JSON-serializable" in out.error["message"]


def test_sleep_until_takes_aware_and_naive_datetimes() -> None:
    app = pipeline.Inngest(app_id="a")
    at = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)

    @app.create_function(fn_id="f", trigger=pipeline.TriggerEvent(event="x"))
    def f(ctx: pipeline.Context) -> None:
        ctx.step.sleep_until("aware", at)
        ctx.step.sleep_until("naive", at.replace(tzinfo=None))  # read as UTC

    fn = app.functions[0]
    first = invoke(fn, _state(), 1, logging.getLogger("t"))
    assert (first.kind, first.step_id, first.wake_at) == ("sleep", "aware", int(at.timestamp() * 1000))
    second = invoke(fn, _state([{"id": "aware", "output": None}]), 1, logging.getLogger("t"))
    assert second.wake_at == first.wake_at
