"""The seed scenario, "Cleanup after function cancellation", in this SDK.

``import-all-contacts`` is a long-running import that is cancelled when a
``contacts/import.cancelled`` event with the same ``importId`` arrives.
``cleanup-cancelled-import`` runs whenever a run of it is cancelled — by cancel_on, the REST
API, a bulk cancellation or a timeout — because every kind of cancellation publishes
``inngest/function.cancelled``.

Run it:  make dev   (or: pipeline dev --app examples.newsletter:app)
Then:    pipeline send contacts/import.requested --data '{"importId": "abc"}'
         pipeline send contacts/import.cancelled --data '{"importId": "abc"}'
"""

from __future__ import annotations

import datetime
import os

import pipeline

app = pipeline.Inngest(app_id="newsletter-app")

# How long each batch of the import takes; the dev default gives you time to cancel it.
BATCH_PAUSE = datetime.timedelta(seconds=float(os.environ.get("NEWSLETTER_BATCH_PAUSE_S", "30")))


def load_contacts(import_id: str) -> list[dict[str, str]]:
    """Stand-in for reading the contact list of an import (a CSV upload, a CRM export...)."""
    return [{"email": f"contact-{i}@example.com", "import": import_id} for i in range(3)]


def save_batch(batch: list[dict[str, str]]) -> int:
    """Stand-in for writing a batch of contacts; returns how many were written."""
    return len(batch)


# This is our "import" function that will get cancelled
@app.create_function(
    fn_id="import-all-contacts",
    trigger=pipeline.TriggerEvent(event="contacts/import.requested"),
    cancel=[pipeline.Cancel(event="contacts/import.cancelled", if_exp="async.data.importId == event.data.importId")],
)
def import_all_contacts(ctx: pipeline.Context) -> dict[str, int]:
    # This is a long running function
    contacts = ctx.step.run("load-contacts", load_contacts, ctx.event.data["importId"])
    saved = 0
    for i, contact in enumerate(contacts):
        ctx.step.sleep(f"pause-{i}", BATCH_PAUSE)
        saved += ctx.step.run(f"save-{i}", save_batch, [contact])
    return {"saved": saved}


# This function will be run only when the matching function_id has a run that is cancelled
@app.create_function(
    fn_id="cleanup-cancelled-import",
    name="Cleanup cancelled import",
    trigger=pipeline.TriggerEvent(
        event="inngest/function.cancelled",
        # The function ID is a hyphenated slug of the App ID w/ the functions" id
        expression="event.data.function_id == 'newsletter-app-import-all-contacts'",
    ),
)
def cleanup_cancelled_import(ctx: pipeline.Context) -> str:
    # This code will execute after your function is cancelled

    # The event that triggered our original function run is passed nested in our event payload
    original_triggering_event = ctx.event.data["event"]
    message = f"Import was cancelled: {original_triggering_event['data']['importId']}"
    ctx.logger.info(message)
    return message
