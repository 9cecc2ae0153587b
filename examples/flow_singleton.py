"""Singleton: one data sync per user at a time. ``mode="cancel"``: a new request cancels the sync in progress
(one ``inngest/function.cancelled`` for it) and starts over; ``mode="skip"`` would record the new run as Skipped.

Run it:  pipeline dev --app examples.flow_singleton:inngest_client
Then:    pipeline send user/sync.requested --data '{"user_id": "u-1"}'
         pipeline send user/sync.requested --data '{"user_id": "u-1"}'   # the first run is Cancelled
"""

from __future__ import annotations

import datetime

import pipeline as inngest

inngest_client = inngest.Inngest(app_id="sync-app")


@inngest_client.create_function(
    fn_id="sync-user", trigger=inngest.TriggerEvent(event="user/sync.requested"),
    singleton=inngest.Singleton(key="event.data.user_id", mode="cancel"))
def sync_user(ctx: inngest.Context) -> str:
    ctx.step.run("fetch", lambda: "fetched")
    ctx.step.sleep("settle", datetime.timedelta(seconds=20))
    return ctx.step.run("store", lambda: f"stored {ctx.event.data['user_id']}")
