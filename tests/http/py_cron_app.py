"""An inngest-py app (the official SDK from PyPI) with one cron function, served by FastAPI:
`uvicorn py_cron_app:api`. Apart from py_app so that the other tests' stacks start no run each minute."""

from __future__ import annotations

import logging

import inngest
import inngest.fast_api
from fastapi import FastAPI

client = inngest.Inngest(app_id="py-cron-app", logger=logging.getLogger("py_cron_app"))


@client.create_function(fn_id="ticker", trigger=inngest.TriggerCron(cron="* * * * *"))
async def ticker(ctx: inngest.Context) -> dict[str, object]:
    """Says which event started it: the runtime's ``inngest/scheduled.timer`` for the tick."""
    return {"name": ctx.event.name, "cron": ctx.event.data.get("cron")}


api = FastAPI()
inngest.fast_api.serve(api, client, [ticker])
