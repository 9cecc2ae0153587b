"""Rate limit: at most one sync per company every 4 hours; events over the limit are dropped, never delayed.

    pipeline dev --app examples.flow_rate_limit:app
    pipeline send intercom/company.updated --data '{"company_id": "acme"}'    # runs
    pipeline send intercom/company.updated --data '{"company_id": "acme"}'    # dropped (listed in the dev UI)
    pipeline send intercom/company.updated --data '{"company_id": "globex"}'  # another key: runs

The dev UI's Functions page shows the limit and links to the function's dropped events
(``GET /v1/functions/flow-rate-limit-synchronize-data/dropped``); ``/metrics`` counts them in
``pipeline_flow_dropped_events_total``. A key that evaluates to ``false`` is not limited at all.
"""

from __future__ import annotations

import datetime

import pipeline

app = pipeline.Inngest(app_id="flow-rate-limit")


@app.create_function(
    fn_id="synchronize-data",
    trigger=pipeline.TriggerEvent(event="intercom/company.updated"),
    rate_limit=pipeline.RateLimit(limit=1, period=datetime.timedelta(hours=4), key="event.data.company_id"),
)
def synchronize_data(ctx: pipeline.Context) -> str:
    company = ctx.event.data["company_id"]
    ctx.step.run("sync", lambda: ctx.logger.info(f"synchronizing {company}"))
    return f"synchronized {company}"
