"""Debounce: one run per burst of webhook events per account, with the newest event (inngest-py's ``debounce``).

Each ``crm/company.updated`` for an account restarts a 10 s period; the run starts when the account has been quiet
for 10 s, or 60 s after the burst's first event at the latest, with the event of the greatest ``ts``. The pending
debounce is on the dev UI's Pending page (and ``GET /v1/pending``), where it can be cancelled.

Run it:  pipeline dev --app examples.flow_debounce:app
Then:    for i in 1 2 3; do pipeline send crm/company.updated --data "{\"account\": \"acme\", \"n\": $i}"; done
         (one run, ~10 s after the last send, with n = 3)
"""

from __future__ import annotations

import datetime

import pipeline

app = pipeline.Inngest(app_id="flow-debounce")


@app.create_function(
    fn_id="sync-company",
    trigger=pipeline.TriggerEvent(event="crm/company.updated"),
    debounce=pipeline.Debounce(period=datetime.timedelta(seconds=10), key="event.data.account",
                               timeout=datetime.timedelta(minutes=1)),
)
def sync_company(ctx: pipeline.Context) -> dict[str, object]:
    # one call to the CRM per quiet account, with its latest state
    return ctx.step.run("sync", lambda: {"account": ctx.event.data["account"], "n": ctx.event.data.get("n")})
