"""Functions used by the end-to-end tests. Importable as ``tests.e2e.apps:app`` so services can run it in
their own processes (the kill tests). Side effects go to files named in the event, so a test can count
them across processes."""

from __future__ import annotations

import datetime
import os
import time
from pathlib import Path

import pipeline

app = pipeline.Inngest(app_id="e2e")


def _note(path: str, line: str) -> None:
    with open(path, "a") as fh:
        fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())


@app.create_function(fn_id="steps", trigger=pipeline.TriggerEvent(event="test/steps"))
def steps(ctx: pipeline.Context) -> list[str]:
    log = ctx.event.data["log"]
    a = ctx.step.run("one", lambda: (_note(log, "one"), "a")[1])

    def two() -> str:
        _note(log, "two")
        hold = ctx.event.data.get("hold")
        while hold and Path(hold).exists():  # the test kills the executor while this step is in flight
            time.sleep(0.05)
        return "b"

    b = ctx.step.run("two", two)
    c = ctx.step.run("three", lambda: (_note(log, "three"), "c")[1])
    return [a, b, c]


@app.create_function(fn_id="filtered", trigger=pipeline.TriggerEvent(
    event="test/filter", expression="event.data.plan == 'pro' && event.data.amount > 100"))
def filtered(ctx: pipeline.Context) -> str:
    return ctx.event.data["plan"]


@app.create_function(fn_id="sleeper", trigger=pipeline.TriggerEvent(event="test/sleep"))
def sleeper(ctx: pipeline.Context) -> dict:
    ctx.step.run("before", lambda: 1)
    ctx.step.sleep("nap", datetime.timedelta(seconds=ctx.event.data["seconds"]))
    return {"woke": True}


@app.create_function(fn_id="flaky", retries=2, trigger=pipeline.TriggerEvent(event="test/flaky"))
def flaky(ctx: pipeline.Context) -> None:
    def boom() -> None:
        _note(ctx.event.data["log"], f"attempt {ctx.attempt}")
        raise RuntimeError("step exploded")

    ctx.step.run("explode", boom)


@app.create_function(fn_id="after-sleeper", trigger=pipeline.TriggerEvent(
    event="inngest/function.finished", expression="event.data.function_id == 'e2e-sleeper'"))
def after_sleeper(ctx: pipeline.Context) -> str:
    return ctx.event.data["run_id"]


@app.create_function(fn_id="wild", trigger=pipeline.TriggerEvent(event="test/wild.*"))
def wild(ctx: pipeline.Context) -> str:
    return ctx.event.name


@app.create_function(
    fn_id="long", trigger=pipeline.TriggerEvent(event="test/long"),
    cancel=[pipeline.Cancel(event="test/cancel", match="data.key")])
def long_running(ctx: pipeline.Context) -> str:
    ctx.step.run("start", lambda: "started")
    ctx.step.sleep("wait", datetime.timedelta(seconds=ctx.event.data.get("sleep", 120)))
    return "done"


@app.create_function(
    fn_id="timed", trigger=pipeline.TriggerEvent(event="test/timed"),
    timeouts=pipeline.Timeouts(finish=datetime.timedelta(seconds=2)))
def timed(ctx: pipeline.Context) -> str:
    ctx.step.sleep("forever", datetime.timedelta(minutes=10))
    return "never"


@app.create_function(fn_id="on-cancel", trigger=pipeline.TriggerEvent(
    event="inngest/function.cancelled", expression="event.data.function_id == 'e2e-long'"))
def on_cancel(ctx: pipeline.Context) -> str:
    return f"cleaned {ctx.event.data['event']['data']['key']}"


@app.create_function(
    fn_id="slow-steps", trigger=pipeline.TriggerEvent(event="test/slow"),
    cancel=[pipeline.Cancel(event="test/slow.cancel", match="data.key")])
def slow_steps(ctx: pipeline.Context) -> str:
    log = ctx.event.data["log"]

    def slow() -> str:
        _note(log, "slow started")
        time.sleep(3)
        _note(log, "slow finished")
        return "slow"

    ctx.step.run("slow", slow)
    ctx.step.run("after", lambda: _note(log, "after"))
    return "done"


@app.create_function(fn_id="huge", trigger=pipeline.TriggerEvent(event="test/huge"), retries=0)
def huge(ctx: pipeline.Context) -> None:
    ctx.step.run("big", lambda: "x" * 2_000_000)


@app.create_function(fn_id="fan-out", trigger=pipeline.TriggerEvent(event="test/fan-out"))
def fan_out(ctx: pipeline.Context) -> list[str]:
    return ctx.step.send_event("emit", [{"name": "test/wild.child", "data": {"parent": ctx.run_id}}])


# -- steps side by side (workers) ------------------------------------------------------------------------------

@app.create_function(fn_id="io-step", trigger=pipeline.TriggerEvent(event="test/io"))
def io_step(ctx: pipeline.Context) -> str:
    """A step that waits on I/O (sleep stands in for a remote call)."""
    return ctx.step.run("call", lambda: (time.sleep(ctx.event.data.get("seconds", 0.2)), "ok")[1])


@app.create_function(
    fn_id="stepless", trigger=pipeline.TriggerEvent(event="test/stepless"),
    cancel=[pipeline.Cancel(event="test/stepless.cancel", match="data.key")])
def stepless(ctx: pipeline.Context) -> str:
    """Works for 3 s without a step (inngest-py's own cancellation test has this shape)."""
    time.sleep(3)
    _note(ctx.event.data["log"], "handler returned")
    return "finished"


def _interval(log: str, run_id: str, seconds: float) -> str:
    start = time.time()
    time.sleep(seconds)
    _note(log, f"{run_id} {start} {time.time()}")
    return "ok"


@app.create_function(fn_id="limited", trigger=pipeline.TriggerEvent(event="test/limited"),
                     concurrency=[pipeline.Concurrency(limit=2)])
def limited(ctx: pipeline.Context) -> str:
    return ctx.step.run("work", _interval, ctx.event.data["log"], ctx.run_id, 0.4)


@app.create_function(fn_id="keyed", trigger=pipeline.TriggerEvent(event="test/keyed"),
                     concurrency=[pipeline.Concurrency(limit=1, key="event.data.account")])
def keyed(ctx: pipeline.Context) -> str:
    log = ctx.event.data["log"]
    return ctx.step.run("work", _interval, log, f"{ctx.event.data['account']}/{ctx.run_id}", 0.4)


_SHARED: dict[str, object] = {}


@app.create_function(fn_id="async-shared", trigger=pipeline.TriggerEvent(event="test/async-shared"))
async def async_shared(ctx: pipeline.Context) -> list[int]:
    """Uses a module-level asyncio object across invocations, as a shared async client would."""
    import asyncio

    async def use() -> int:
        lock = _SHARED.setdefault("lock", asyncio.Lock())
        async with lock:  # raises if this invocation runs on another event loop than the lock's
            await asyncio.sleep(0.01)
        return id(asyncio.get_running_loop())

    first = await ctx.step.run("first", use)
    second = await ctx.step.run("second", use)
    return [first, second]


@app.create_function(fn_id="retry-after", trigger=pipeline.TriggerEvent(event="test/retry-after"))
def retry_after(ctx: pipeline.Context) -> int:
    if ctx.attempt == 0:  # a rate-limited API that said when to come back
        raise pipeline.RetryAfterError("429 from the API", ctx.event.data["after_ms"])
    return ctx.attempt


def _always_fails(what: str) -> None:
    raise ValueError(f"{what} is down")


@app.create_function(fn_id="step-error", retries=1, trigger=pipeline.TriggerEvent(event="test/step-error"))
def step_error(ctx: pipeline.Context) -> str:
    try:
        ctx.step.run("charge", _always_fails, "the payment API")
    except pipeline.StepError as err:
        if not ctx.event.data.get("catch", True):
            raise
        what = f"recovered from {err.name}: {err.message}"
    return ctx.step.run("fallback", lambda: what)


def _after_doomed(ctx: pipeline.Context) -> str:
    data = ctx.event.data
    return f"cleaned up {data['event']['id']} after {data['error']['name']}: {data['error']['message']}"


@app.create_function(fn_id="doomed", retries=0, trigger=pipeline.TriggerEvent(event="test/doomed"),
                     on_failure=_after_doomed)
def doomed(ctx: pipeline.Context) -> None:
    raise RuntimeError("no way")


# -- step.wait_for_event ---------------------------------------------------------------------------------------

@app.create_function(fn_id="waiter", trigger=pipeline.TriggerEvent(event="test/wait.start"))
def waiter(ctx: pipeline.Context) -> dict:
    time.sleep(float(ctx.event.data.get("pause", 0)))  # not a step: runs on every invocation (the race test)
    got = ctx.step.wait_for_event("approval", event="test/wait.approve", if_exp="async.data.key == event.data.key",
                                  timeout=int(ctx.event.data.get("timeout_ms", 30_000)))
    return {"approved": None if got is None else got.data, "by": None if got is None else got.id}


@app.create_function(fn_id="waiter-async", trigger=pipeline.TriggerEvent(event="test/wait.async"))
async def waiter_async(ctx: pipeline.Context) -> dict:
    got = await ctx.step.wait_for_event("any", event="test/wait.any", timeout=datetime.timedelta(seconds=30))
    after = await ctx.step.run("after", lambda: "went on")
    return {"got": None if got is None else got.data, "after": after}


# -- ctx.group.parallel ----------------------------------------------------------------------------------------

def _timed(log: str, name: str, fail_first: bool = False) -> str:
    """Note start and end (epoch ms) of one execution; optionally fail the first execution of this step."""
    runs = Path(log).read_text().count(f"start {name} ") if Path(log).exists() else 0
    _note(log, f"start {name} {time.time() * 1000:.0f}")
    time.sleep(1.0)
    _note(log, f"end {name} {time.time() * 1000:.0f}")
    if fail_first and runs == 0:
        raise RuntimeError(f"{name} fails once")
    return name.upper()


@app.create_function(fn_id="par-steps", retries=2, trigger=pipeline.TriggerEvent(event="test/parallel"))
def par_steps(ctx: pipeline.Context) -> list:
    log = ctx.event.data["log"]
    results = ctx.group.parallel(tuple(
        (lambda n=n: ctx.step.run(n, _timed, log, n, n == "c")) for n in ("a", "b", "c")))
    return [*results, ctx.step.run("after", lambda: "done")]


@app.create_function(fn_id="par-steps-async", trigger=pipeline.TriggerEvent(event="test/parallel.async"))
async def par_steps_async(ctx: pipeline.Context) -> list:
    import asyncio

    async def slow(name: str) -> str:
        await asyncio.sleep(1.0)
        return name * 2

    return list(await ctx.group.parallel(tuple((lambda n=n: ctx.step.run(n, slow, n)) for n in ("x", "y", "z"))))


# -- step.invoke -----------------------------------------------------------------------------------------------

@app.create_function(fn_id="square", retries=0, trigger=pipeline.TriggerEvent(event="test/never.sent"))
def square(ctx: pipeline.Context) -> int:
    if ctx.event.data.get("fail"):
        raise ValueError(f"cannot square {ctx.event.data['n']}")
    ctx.step.sleep("think", int(ctx.event.data.get("think_ms", 0)))
    return ctx.step.run("square", lambda: ctx.event.data["n"] ** 2)


@app.create_function(fn_id="invoker", trigger=pipeline.TriggerEvent(event="test/invoke"))
def invoker(ctx: pipeline.Context) -> object:
    data = ctx.event.data
    try:
        got = ctx.step.invoke("child", function=square, data={"n": data["n"], "fail": data.get("fail", False),
                                                               "think_ms": data.get("think_ms", 0)},
                              timeout=data.get("timeout_ms"))
    except pipeline.StepError as err:
        return {"error": err.name, "message": err.message}
    return {"squared": got}


@app.create_function(fn_id="invoker-async", trigger=pipeline.TriggerEvent(event="test/invoke.async"))
async def invoker_async(ctx: pipeline.Context) -> object:
    got = await ctx.step.invoke_by_id("child", function_id="square", data={"n": ctx.event.data["n"]})
    return {"squared": got}


# -- TriggerCron: an app of its own, so that its ticks start no runs in the other tests' stacks ----------------

cron_app = pipeline.Inngest(app_id="e2e-cron")


@cron_app.create_function(fn_id="every-minute", trigger=pipeline.TriggerCron(cron="* * * * *"))
def every_minute(ctx: pipeline.Context) -> object:
    return {"tick": ctx.event.ts, "cron": ctx.event.data["cron"]}


# -- errors in an async handler --------------------------------------------------------------------------------

def _declined() -> None:
    raise pipeline.NonRetriableError("card declined", quiet=True)


@app.create_function(fn_id="errors-async", retries=1, trigger=pipeline.TriggerEvent(event="test/errors.async"))
async def errors_async(ctx: pipeline.Context) -> dict:
    if ctx.attempt == 0:
        raise pipeline.RetryAfterError("slow down", ctx.event.data["retry_after_ms"])
    try:
        await ctx.step.run("charge", _declined)
    except pipeline.StepError as err:
        return {"caught": err.name, "message": err.message, "attempt": ctx.attempt}
    return {"caught": None}


# -- ctx.logger over replays -----------------------------------------------------------------------------------

@app.create_function(fn_id="chatty", trigger=pipeline.TriggerEvent(event="test/chatty"))
def chatty(ctx: pipeline.Context) -> int:
    total = 0
    for n in range(3):
        ctx.logger.info("chatty %s before step %d", ctx.event.id, n)
        total += ctx.step.run(f"add-{n}", lambda n=n: n)
    ctx.logger.info("chatty %s done", ctx.event.id)
    return total


@app.create_function(fn_id="chatty-async", trigger=pipeline.TriggerEvent(event="test/chatty.async"))
async def chatty_async(ctx: pipeline.Context) -> int:
    total = 0
    for n in range(3):
        ctx.logger.info("chatty %s before step %d", ctx.event.id, n)
        total += await ctx.step.run(f"add-{n}", lambda n=n: n)
    ctx.logger.info("chatty %s done", ctx.event.id)
    return total
