"""Functions for bench/steps.py, importable by worker processes (``--app bench.steps_app:app``)."""

from __future__ import annotations

import asyncio
import datetime
import time

import pipeline

app = pipeline.Inngest(app_id="bench")
IO_SECONDS = 0.2


@app.create_function(fn_id="io-sync", trigger=pipeline.TriggerEvent(event="bench/io-sync"))
def io_sync(ctx: pipeline.Context) -> str:
    return ctx.step.run("call", lambda: (time.sleep(IO_SECONDS), "ok")[1])


@app.create_function(fn_id="io-async", trigger=pipeline.TriggerEvent(event="bench/io-async"))
async def io_async(ctx: pipeline.Context) -> str:
    async def call() -> str:
        await asyncio.sleep(IO_SECONDS)
        return "ok"

    return await ctx.step.run("call", call)


@app.create_function(fn_id="noop", trigger=pipeline.TriggerEvent(event="bench/noop"))
def noop(ctx: pipeline.Context) -> int:
    return ctx.step.run("nothing", lambda: 1)


@app.create_function(fn_id="noop-gated", trigger=pipeline.TriggerEvent(event="bench/noop-gated"),
                     cancel=[pipeline.Cancel(event="bench/noop-gated.cancel", match="data.key")])
def noop_gated(ctx: pipeline.Context) -> int:
    return ctx.step.run("nothing", lambda: 1)


@app.create_function(fn_id="sleeper", trigger=pipeline.TriggerEvent(event="bench/sleep"),
                     cancel=[pipeline.Cancel(event="bench/sleep.cancel", match="data.key")])
def sleeper(ctx: pipeline.Context) -> None:
    ctx.step.sleep("wait", datetime.timedelta(minutes=10))
