"""The functions bench/flow.py measures: each flow option beside the same function without it."""

from __future__ import annotations

import datetime

import pipeline

app = pipeline.Inngest(app_id="benchflow")


@app.create_function(fn_id="plain", trigger=pipeline.TriggerEvent(event="bench/plain"), retries=0)
def plain(ctx: pipeline.Context) -> int:
    return len(ctx.events)


@app.create_function(fn_id="debounced", trigger=pipeline.TriggerEvent(event="bench/debounce"), retries=0,
                     debounce=pipeline.Debounce(period=datetime.timedelta(seconds=1), key="event.data.key"))
def debounced(ctx: pipeline.Context) -> int:
    return len(ctx.events)


@app.create_function(fn_id="batched", trigger=pipeline.TriggerEvent(event="bench/batch"), retries=0,
                     batch_events=pipeline.Batch(max_size=100, timeout=datetime.timedelta(seconds=1)))
def batched(ctx: pipeline.Context) -> int:
    return len(ctx.events)
