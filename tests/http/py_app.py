"""An app written with inngest-py (the official SDK from PyPI), served by FastAPI: `uvicorn py_app:api`.

Nothing here knows about this runtime: the app reads INNGEST_DEV and INNGEST_BASE_URL from the environment,
as it would to talk to the Inngest dev server.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os

import inngest
import inngest.fast_api
from fastapi import FastAPI

log = logging.getLogger("py_app")
client = inngest.Inngest(app_id="py-app", logger=log)  # dev or cloud mode: INNGEST_DEV decides


@client.create_function(
    fn_id="flaky",
    trigger=inngest.TriggerEvent(event="py/flaky"),
    retries=2,
    cancel=[inngest.Cancel(event="py/stop", if_exp="async.data.k == event.data.k")],
)
async def flaky(ctx: inngest.Context) -> dict[str, object]:
    """step.run failing once then retried, a sleep, a wait (with or without its event), send_event."""

    async def fails_once() -> dict[str, int]:
        if ctx.attempt == 0:
            raise RuntimeError("the first attempt fails")
        return {"attempt": ctx.attempt}

    first = await ctx.step.run("fails-once", fails_once)
    await ctx.step.sleep("nap", datetime.timedelta(seconds=float(ctx.event.data.get("nap_s", 1))))
    got = await ctx.step.wait_for_event("wait-go", event="py/go", if_exp="async.data.k == event.data.k",
                                        timeout=datetime.timedelta(seconds=float(ctx.event.data.get("wait_s", 30))))
    ids = await ctx.step.send_event("tell", inngest.Event(name="py/told", data={"k": ctx.event.data["k"]}))
    return {"first": first, "got": got.data if got is not None else None, "sent": len(ids)}


async def _failed(ctx: inngest.Context) -> None:
    log.info("on_failure ran for %s", ctx.event.data["event"]["data"]["k"])


@client.create_function(fn_id="doomed", trigger=inngest.TriggerEvent(event="py/doomed"), retries=3,
                        on_failure=_failed)
async def doomed(ctx: inngest.Context) -> None:
    """NonRetriableError: fails at once, no retry; on_failure runs."""
    raise inngest.NonRetriableError("no point in retrying")


@client.create_function(fn_id="fanout", trigger=inngest.TriggerEvent(event="py/fanout"))
async def fanout(ctx: inngest.Context) -> dict[str, object]:
    """group.parallel, a repeated step id, and invoke."""
    pair = await ctx.group.parallel((
        lambda: ctx.step.run("side", lambda: "a"),
        lambda: ctx.step.run("other-side", lambda: "b"),
    ))
    repeated = [await ctx.step.run("again", lambda i=i: i * 10) for i in range(3)]  # again, again:1, again:2
    child = await ctx.step.invoke("call-child", function=child_fn, data={"n": 21})
    return {"pair": list(pair), "repeated": repeated, "child": child}


@client.create_function(fn_id="child", trigger=inngest.TriggerEvent(event="py/child.never"))
async def child_fn(ctx: inngest.Context) -> int:
    return int(ctx.event.data["n"]) * 2


CALLS = os.environ.get("PY_APP_CALLS")  # a file each step appends its id to when it runs (the fault tests)


def _record(what: str) -> None:
    if CALLS:
        with open(CALLS, "a") as f:
            f.write(what + "\n")


@client.create_function(fn_id="steady", trigger=inngest.TriggerEvent(event="py/steady"), retries=4)
async def steady(ctx: inngest.Context) -> dict[str, object]:
    """Two steps around a pause, the first slow: for killing the worker mid-call and stopping the app mid-run."""
    k = ctx.event.data["k"]

    async def slow() -> str:
        _record(f"{k} one start")
        await asyncio.sleep(float(ctx.event.data.get("slow_s", 0)))
        _record(f"{k} one end")
        return "one"

    def two() -> str:
        _record(f"{k} two")
        return "two"

    first = await ctx.step.run("one", slow)
    await ctx.step.sleep("pause", datetime.timedelta(seconds=float(ctx.event.data.get("pause_s", 0))))
    second = await ctx.step.run("two", two)
    return {"steps": [first, second]}


@client.create_function(fn_id="one-step", trigger=inngest.TriggerEvent(event="bench/one-step"))
async def one_step(ctx: inngest.Context) -> int:
    """One step that does nothing: bench/http_apps.py measures what a step costs over HTTP."""
    return await ctx.step.run("only", lambda: 1)


@client.create_function(fn_id="learner", trigger=inngest.TriggerEvent(event="py/learn"))
async def learner(ctx: inngest.Context) -> dict[str, object]:
    """A sleep, then a wait on a name no run waited for before (no cancel rules: nothing else waits for the
    matcher): tests/http/test_applied.py pauses the matcher while the wait is learned."""
    await ctx.step.sleep("nap", datetime.timedelta(seconds=float(ctx.event.data.get("nap_s", 1))))
    got = await ctx.step.wait_for_event("wait-learned", event="py/learned", if_exp="async.data.k == event.data.k",
                                        timeout=datetime.timedelta(seconds=30))
    return {"got": got.data if got is not None else None}


@client.create_function(fn_id="limited", trigger=inngest.TriggerEvent(event="py/limited"),
                        rate_limit=inngest.RateLimit(limit=1, period=datetime.timedelta(minutes=2), key="event.data.k"),
                        idempotency="event.data.order")
async def limited(ctx: inngest.Context) -> object:
    """rate_limit and idempotency: events over them are dropped by the runtime before any call."""
    return ctx.event.data["order"]


api = FastAPI()
inngest.fast_api.serve(api, client, [flaky, doomed, fanout, child_fn, steady, one_step, learner, limited])
