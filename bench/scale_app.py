"""The function of bench/scale.py, importable by the services (``--app bench.scale_app:app``).

Kept apart from bench/scale.py so that the services measured for RSS import only the runtime and this
module, not the bench's own clients and rich.

The shape of the seed's import (``../shared/seed/cleanup-after-function-cancellation.md``): triggered by
``contacts/import.requested``, cancelled by a ``contacts/import.cancelled`` with the same importId, and
asleep for a week: every run stays Sleeping, with its cancel listener, for the whole bench.
"""

from __future__ import annotations

import datetime

import pipeline

app = pipeline.Inngest(app_id="scale")
IMPORT, CANCEL = "contacts/import.requested", "contacts/import.cancelled"


@app.create_function(
    fn_id="import",
    trigger=pipeline.TriggerEvent(event=IMPORT),
    cancel=[pipeline.Cancel(event=CANCEL, if_exp="async.data.importId == event.data.importId")],
)
def import_contacts(ctx: pipeline.Context) -> str:
    ctx.step.sleep("wait-a-week", datetime.timedelta(days=7))
    return "done"
