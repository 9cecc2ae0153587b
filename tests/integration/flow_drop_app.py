"""Functions of the rate-limit and idempotency tests. Importable as ``tests.integration.flow_drop_app:app`` so a
run owner can serve it in a process of its own (the tests SIGKILL it)."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from contextlib import contextmanager

import pipeline
from pipeline.api import bound_port, start_in_thread, stop
from pipeline.sdk.app import Registry
from pipeline.testing.stack import Stack

app = pipeline.Inngest(app_id="flowdrop")


@app.create_function(fn_id="sync-account", trigger=pipeline.TriggerEvent(event="flow/sync"),
                     rate_limit=pipeline.RateLimit(limit=1, period=datetime.timedelta(seconds=90),
                                                   key="event.data.account"))
def sync_account(ctx: pipeline.ContextSync) -> str:
    return f"synced {ctx.event.data['account']}"


@app.create_function(fn_id="charge", trigger=pipeline.TriggerEvent(event="flow/charge"),
                     idempotency="event.data.order")
def charge(ctx: pipeline.ContextSync) -> str:
    return f"charged {ctx.event.data['order']}"


@app.create_function(fn_id="mixed", trigger=pipeline.TriggerEvent(event="flow/mixed"), idempotency="event.data.order",
                     rate_limit=pipeline.RateLimit(limit=5, period=60_000, key="event.data.account"))
def mixed(ctx: pipeline.ContextSync) -> str:
    return "mixed"


@app.create_function(fn_id="child", trigger=pipeline.TriggerEvent(event="flow/child.never"),
                     rate_limit=pipeline.RateLimit(limit=1, period=datetime.timedelta(seconds=90)))
def child(ctx: pipeline.ContextSync) -> str:
    return "child ran"


@app.create_function(fn_id="parent", trigger=pipeline.TriggerEvent(event="flow/parent"))
def parent(ctx: pipeline.ContextSync) -> dict[str, str]:
    try:
        return {"child": str(ctx.step.invoke("call-child", function=child, timeout=datetime.timedelta(minutes=5)))}
    except pipeline.StepError as exc:
        return {"error": str(exc)}


@contextmanager
def api(stack: Stack) -> Iterator[str]:
    """The HTTP API serving this app on the stack's topics, in a thread; yields its base URL."""
    server, thread = start_in_thread(stack.settings, "127.0.0.1", 0, wait_ready=True, registry=Registry([app]))
    try:
        yield f"http://127.0.0.1:{bound_port(server)}"
    finally:
        stop(server, thread)
