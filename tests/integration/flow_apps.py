"""Functions of the flow-control tests (throttle, priority, singleton). Importable as
``tests.integration.flow_apps:app`` so a run owner can run it in its own process (the kill tests). Each run notes
when its first step ran in the file named by its event, so a test reads the start order across processes."""

from __future__ import annotations

import datetime
import time

import pipeline
from tests.e2e.apps import _note

app = pipeline.Inngest(app_id="flow")


@app.create_function(fn_id="single", trigger=pipeline.TriggerEvent(event="flow/single"),
                     singleton=pipeline.Singleton(key="event.data.k", mode="cancel"))
def single(ctx: pipeline.Context) -> str:
    ctx.step.run("first", lambda: "x")
    ctx.step.sleep("nap", datetime.timedelta(seconds=ctx.event.data.get("sleep", 2)))
    return ctx.event.data["n"]


@app.create_function(fn_id="single-skip", trigger=pipeline.TriggerEvent(event="flow/single-skip"),
                     singleton=pipeline.Singleton(key="event.data.k", mode="skip"))
def single_skip(ctx: pipeline.Context) -> str:
    ctx.step.sleep("nap", datetime.timedelta(seconds=ctx.event.data.get("sleep", 2)))
    return ctx.event.data["n"]


def _started(ctx: pipeline.Context) -> str:
    return ctx.step.run("start", lambda: (_note(ctx.event.data["log"], f"{ctx.event.data['n']} {time.time()}"),
                                          "ok")[1])


TEN_SECONDS = datetime.timedelta(seconds=10)
app.create_function(fn_id="throttled", trigger=pipeline.TriggerEvent(event="flow/throttled"),
                    throttle=pipeline.Throttle(limit=2, period=TEN_SECONDS, key="event.data.k"))(_started)
# with cancel rules: a released run passes the watermark gate before it takes its token
app.create_function(fn_id="throttled-cancel", trigger=pipeline.TriggerEvent(event="flow/throttled-cancel"),
                    throttle=pipeline.Throttle(limit=2, period=TEN_SECONDS, key="event.data.k"),
                    cancel=[pipeline.Cancel(event="flow/throttled.cancel", match="data.n")])(_started)
app.create_function(fn_id="strict", trigger=pipeline.TriggerEvent(event="flow/strict"),
                    throttle=pipeline.Throttle(limit=2, period=datetime.timedelta(seconds=4), strict=True))(_started)


@app.create_function(fn_id="ordered", trigger=pipeline.TriggerEvent(event="flow/ordered"),
                     concurrency=[pipeline.Concurrency(limit=1)],
                     priority=pipeline.Priority(run="event.data.priority"))
def ordered(ctx: pipeline.Context) -> str:
    def work() -> str:
        _note(ctx.event.data["log"], str(ctx.event.data["n"]))
        time.sleep(ctx.event.data.get("hold", 0.3))
        return "ok"

    return ctx.step.run("work", work)
