"""Functions with ``debounce`` and ``batch_events`` for the flow-control tests. Importable as
``tests.integration.flow_app:app`` so a run owner can run it in its own process (the kill tests)."""

from __future__ import annotations

import datetime

import pipeline

app = pipeline.Inngest(app_id="flow")


@app.create_function(fn_id="debounced", trigger=pipeline.TriggerEvent(event="flow/debounce"),
                     debounce=pipeline.Debounce(period=datetime.timedelta(seconds=3), key="event.data.key"))
def debounced(ctx: pipeline.Context) -> str:
    return str(ctx.event.id)


@app.create_function(fn_id="capped", trigger=pipeline.TriggerEvent(event="flow/capped"),
                     debounce=pipeline.Debounce(period=2000, timeout=3000))
def capped(ctx: pipeline.Context) -> str:
    return str(ctx.event.id)


@app.create_function(fn_id="batched", trigger=pipeline.TriggerEvent(event="flow/batch"),
                     batch_events=pipeline.Batch(max_size=5, timeout=datetime.timedelta(seconds=3),
                                                 if_exp="event.data.kind == 'bulk'"))
def batched(ctx: pipeline.Context) -> list[str]:
    assert ctx.event.id == ctx.events[0].id
    return [str(e.id) for e in ctx.events]


@app.create_function(fn_id="plain", trigger=pipeline.TriggerEvent(event="flow/plain"))
def plain(ctx: pipeline.Context) -> str:
    """No flow option: the tests wait for one of its runs to know a run owner process is up."""
    return str(ctx.event.id)


@app.create_function(fn_id="slow", trigger=pipeline.TriggerEvent(event="flow/slow"),
                     debounce=pipeline.Debounce(period=datetime.timedelta(minutes=5), key="event.data.key"))
def slow(ctx: pipeline.Context) -> str:
    """Stays pending for the test's length: listed by the API, cancelled by REST."""
    return str(ctx.event.id)


@app.create_function(fn_id="order", trigger=pipeline.TriggerEvent(event="flow/order"),
                     debounce=pipeline.Debounce(period=datetime.timedelta(seconds=3), key="event.data.id"),
                     cancel=pipeline.Cancel(event="flow/order.cancelled", match="data.id"))
def order(ctx: pipeline.Context) -> str:
    return str(ctx.event.id)
