"""Whatever a handler raises - SystemExit, KeyboardInterrupt, CancelledError, any BaseException - is a failed
attempt whose error is valid JSON in the one payload shape; only the worker's own stop is not a failure."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

import pipeline
from pipeline.config import Settings
from pipeline.sdk.app import Registry
from pipeline.workers import service
from pipeline.workers.invoke import run_async, run_sync

client = pipeline.Inngest(app_id="unit-errors")
ODD = 'it\'s "quoted", a \\ backslash, {braces} %s %r\nand a new line, ünïcode'
LOG = logging.getLogger("test.worker_errors")


class _Raised:
    """The exception the handlers below raise (a test sets it)."""

    exc: BaseException = SystemExit("bye")


@client.create_function(fn_id="sync-raiser", trigger=pipeline.TriggerEvent(event="x"))
def sync_raiser(ctx: pipeline.ContextSync) -> None:
    raise _Raised.exc


@client.create_function(fn_id="async-raiser", trigger=pipeline.TriggerEvent(event="y"))
async def async_raiser(ctx: pipeline.Context) -> None:
    await asyncio.sleep(0)
    raise _Raised.exc


@client.create_function(fn_id="step-raiser", trigger=pipeline.TriggerEvent(event="z"))
def step_raiser(ctx: pipeline.ContextSync) -> None:
    def boom() -> None:
        raise _Raised.exc

    ctx.step.run("boom", boom)


def _inv(fn: pipeline.Function) -> dict[str, Any]:
    return {"run_id": "R", "function_id": fn.id, "seq": 1, "attempt": 0, "event": json.dumps({"name": "x"}),
            "steps": [], "owner_partition": 0}


EXCEPTIONS = [SystemExit("bye"), SystemExit(3), SystemExit(), KeyboardInterrupt(), asyncio.CancelledError(),
              GeneratorExit(), BaseException(ODD), SystemExit(ODD), ValueError(ODD), RuntimeError('"'), Exception("'")]


def _check(out: dict[str, Any], exc: BaseException) -> dict[str, Any]:
    assert out["kind"] == "error" and out["retriable"] is True
    error = json.loads(out["error"])  # valid JSON, whatever the message holds
    assert error["name"] == type(exc).__name__
    assert error["message"] == error["error"] == (str(exc) or type(exc).__name__)
    return error


@pytest.mark.parametrize("exc", EXCEPTIONS, ids=lambda e: f"{type(e).__name__}({e!s:.10})")
def test_the_failure_payload_is_json_for_any_exception(exc: BaseException) -> None:
    from pipeline.workers.invoke import failed

    _check(failed(_inv(sync_raiser), exc, 1, "w"), exc)


@pytest.mark.parametrize("exc", EXCEPTIONS, ids=lambda e: f"{type(e).__name__}({e!s:.10})")
def test_a_sync_handler_that_raises_any_base_exception_fails_the_attempt(exc: BaseException) -> None:
    _Raised.exc = exc
    _check(run_sync(sync_raiser, _inv(sync_raiser), LOG), exc)


@pytest.mark.parametrize("exc", EXCEPTIONS, ids=lambda e: f"{type(e).__name__}({e!s:.10})")
def test_an_async_handler_that_raises_any_base_exception_fails_the_attempt(exc: BaseException) -> None:
    _Raised.exc = exc
    _check(asyncio.run(run_async(async_raiser, _inv(async_raiser), LOG)), exc)


def test_a_step_that_raises_system_exit_fails_the_attempt() -> None:
    """Not a failed step (steps catch Exception, as inngest-py's do): the handler's attempt fails."""
    _Raised.exc = SystemExit(ODD)
    _check(run_sync(step_raiser, _inv(step_raiser), LOG), _Raised.exc)


# -- the worker: every invocation gets an outcome, unless the worker itself is stopping --------------------------


class _Quiet:
    """Stands in for the worker's consumer and producer: this test sends nothing to a broker."""

    def __init__(self, *_: Any, **__: Any) -> None:
        pass

    def __len__(self) -> int:
        return 0


class _Worker(service.Worker):
    """The worker with its outcomes kept in a list instead of produced."""

    def __init__(self) -> None:
        super().__init__(Registry([client]), Settings(bootstrap_servers="127.0.0.1:9"), concurrency=2)
        self.sent: list[tuple[dict[str, Any], int, int]] = []

    def _send(self, inv: dict[str, Any], result: dict[str, Any], p: int, offset: int) -> None:
        self.sent.append((result, p, offset))


@pytest.fixture
def worker(monkeypatch: pytest.MonkeyPatch) -> _Worker:
    monkeypatch.setattr(service, "Consumer", _Quiet)
    monkeypatch.setattr(service, "Producer", _Quiet)
    return _Worker()


def test_the_worker_sends_json_for_system_exit_from_a_sync_handler(worker: _Worker) -> None:
    _Raised.exc = SystemExit(ODD)
    worker._running = 1
    worker._run_sync(sync_raiser, _inv(sync_raiser), 0, 7)
    ((result, p, offset),) = worker.sent
    assert (p, offset, worker._running) == (0, 7, 0)
    _check(result, _Raised.exc)


@pytest.mark.parametrize("exc", [asyncio.CancelledError(), SystemExit("bye"), KeyboardInterrupt(), BaseException(ODD)],
                         ids=lambda e: type(e).__name__)
def test_the_worker_sends_an_outcome_for_any_base_exception_from_an_async_handler(worker: _Worker,
                                                                                  exc: BaseException) -> None:
    _Raised.exc = exc
    worker._running = 1

    async def go() -> None:
        await worker._run_async(async_raiser, _inv(async_raiser), 1, 9)

    asyncio.run(go())
    ((result, p, offset),) = worker.sent
    assert (p, offset, worker._running) == (1, 9, 0)
    _check(result, exc)


def test_an_async_handler_that_cancels_its_own_task_is_a_failed_attempt(worker: _Worker) -> None:
    @client.create_function(fn_id="self-cancel", trigger=pipeline.TriggerEvent(event="s"))
    async def self_cancel(ctx: pipeline.Context) -> None:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        await asyncio.sleep(1)

    worker._running = 1
    asyncio.run(worker._run_async(self_cancel, _inv(self_cancel), 0, 3))
    ((result, _, _),) = worker.sent
    assert json.loads(result["error"])["name"] == "CancelledError"


def test_the_worker_stopping_cancels_its_handler_without_a_failed_attempt(worker: _Worker) -> None:
    """The worker's own stop is not the handler's failure: no outcome (the invocation runs again elsewhere)."""
    started = asyncio.Event()

    @client.create_function(fn_id="long", trigger=pipeline.TriggerEvent(event="l"))
    async def long(ctx: pipeline.Context) -> None:
        started.set()
        await asyncio.sleep(60)

    async def go() -> None:
        task = asyncio.ensure_future(worker._run_async(long, _inv(long), 0, 5))
        await started.wait()
        worker.stop()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    worker._running = 1
    asyncio.run(go())
    assert worker.sent == [] and worker._running == 0
