"""Code written for inngest-py: ``import pipeline as inngest``, the client, Function objects, and the options
that are not built yet refused by name."""

from __future__ import annotations

import datetime
import logging

import pytest

import pipeline as inngest


def test_inngest_py_style_definitions_load_and_return_function_objects() -> None:
    logger = logging.getLogger("my_app")
    client = inngest.Inngest(app_id="my_app", logger=logger, is_production=False)

    @client.create_function(fn_id="import-contacts", trigger=inngest.TriggerEvent(event="contacts/import"),
                            cancel=[inngest.Cancel(event="contacts/cancel", if_exp="async.data.id == event.data.id",
                                                   timeout=datetime.timedelta(hours=1))], retries=2)
    def import_contacts(ctx: inngest.ContextSync) -> str:
        return ctx.step.run("load", lambda: "ok")

    @client.create_function(fn_id="async-one", trigger=inngest.TriggerEvent(event="a/b"))
    async def async_one(ctx: inngest.Context) -> None:
        await ctx.step.sleep("nap", 1000)

    assert isinstance(import_contacts, inngest.Function) and import_contacts.id == "my_app-import-contacts"
    assert import_contacts.logger is logger and import_contacts.retries == 2
    assert async_one.is_async and not import_contacts.is_async
    assert [f.id for f in client.functions] == ["my_app-import-contacts", "my_app-async-one"]


def test_bad_cron_triggers_and_unknown_options_are_refused_clearly() -> None:
    client = inngest.Inngest(app_id="a")
    with pytest.raises(inngest.DefinitionError, match="invalid cron expression"):
        client.create_function(fn_id="f", trigger=inngest.TriggerCron(cron="*/5 * * *"))(lambda ctx: None)
    with pytest.raises(inngest.DefinitionError, match="unknown time zone"):
        client.create_function(fn_id="g", trigger=inngest.TriggerCron(cron="TZ=Mars/Olympus 0 9 * * *"))(
            lambda ctx: None)
    fn = client.create_function(fn_id="h", trigger=[inngest.TriggerCron(cron="TZ=Europe/Paris 0 9 * * *"),
                                                    inngest.TriggerEvent(event="x")])(lambda ctx: None)
    assert [c.expression for c in fn.crons] == ["TZ=Europe/Paris 0 9 * * *"] and len(fn.triggers) == 1
    with pytest.raises(TypeError, match="unexpected keyword argument 'retry'"):
        client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="x"), retry=3)


def test_fast_api_serve_leaves_the_web_app_working_and_describes_the_functions() -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    client = inngest.Inngest(app_id="shop")

    @client.create_function(fn_id="ship", trigger=inngest.TriggerEvent(event="order/paid"),
                            cancel=inngest.Cancel(event="order/cancelled", match="data.order_id"))
    def ship(ctx: inngest.Context) -> None:
        return None

    web = FastAPI()

    @web.get("/hello")
    def hello() -> dict:
        return {"hello": "world"}

    inngest.fast_api.serve(web, client, [ship])
    http = TestClient(web)
    assert http.get("/hello").json() == {"hello": "world"}
    described = http.get("/api/inngest").json()
    assert described["functions"] == [{"id": "shop-ship", "name": "ship", "triggers": [{"event": "order/paid"}],
                                       "cancel": ["order/cancelled"]}]
    assert http.put("/api/inngest").status_code == 200 and http.post("/api/inngest").status_code == 501
    other = inngest.Inngest(app_id="other")
    with pytest.raises(ValueError, match="not created by client 'other'"):
        inngest.fast_api.serve(FastAPI(), other, [ship])


class _Queue:
    """A consumer whose records have all been fetched: what consume(n, timeout) would return, and how long it
    would block (it blocks for the whole timeout whenever fewer than n records are there)."""

    def __init__(self, n: int) -> None:
        self.left = n
        self.blocked = 0.0

    def consume(self, num_messages: int, timeout: float) -> list[int]:
        take = min(num_messages, self.left)
        self.left -= take
        if take < num_messages:
            self.blocked += timeout
        return list(range(take))


def test_consume_available_waits_for_the_first_record_only() -> None:
    from pipeline.kafka.client import consume_available

    queue = _Queue(3)
    assert len(consume_available(queue, 500, 0.1)) == 3
    assert queue.blocked == 0  # the three fetched records came back without waiting for 500
    assert consume_available(queue, 500, 0.1) == [] and queue.blocked == 0.1  # nothing there: one wait
