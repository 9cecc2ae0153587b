"""Throttle: at most 2 starts of ``sync-contacts`` per 10 s per account, the rest wait in order (none dropped).

A partner API allows a few calls per account per period; the throttle paces run *starts* (steps are never
throttled). ``strict=True`` would count "at most 2 in any rolling 10 s" instead of Inngest's GCRA pacing.

Run it:  pipeline dev --app examples.flow_throttle:inngest_client
Then:    for i in 1 2 3 4 5; do pipeline send crm/contacts.changed --data '{"account": "a-1"}'; done
         (two runs start at once, then one every 5 s; the dev UI's runs page shows them held "throttle")
"""

from __future__ import annotations

import datetime

import pipeline as inngest

inngest_client = inngest.Inngest(app_id="crm-app")


@inngest_client.create_function(
    fn_id="sync-contacts", trigger=inngest.TriggerEvent(event="crm/contacts.changed"),
    throttle=inngest.Throttle(limit=2, period=datetime.timedelta(seconds=10), key="event.data.account"))
def sync_contacts(ctx: inngest.Context) -> str:
    return ctx.step.run("call-partner-api", lambda: f"synced {ctx.event.data['account']}")
