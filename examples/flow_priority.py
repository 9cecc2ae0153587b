"""Priority: one report at a time (concurrency 1); enterprise accounts' reports jump the queue.

``Priority(run=...)`` is CEL on the event giving seconds, clamped to ±600: a run with +600 is placed as if it had
been waiting ten minutes longer, so it goes ahead of the runs that are waiting for the slot; a negative value
lets later runs by.

Run it:  pipeline dev --app examples.flow_priority:inngest_client
Then:    for i in 1 2 3; do pipeline send reports/requested --data '{"plan": "free"}'; done
         pipeline send reports/requested --data '{"plan": "enterprise"}'   # runs second, not fourth
"""

from __future__ import annotations

import time

import pipeline as inngest

inngest_client = inngest.Inngest(app_id="reports-app")


@inngest_client.create_function(
    fn_id="build-report", trigger=inngest.TriggerEvent(event="reports/requested"),
    concurrency=[inngest.Concurrency(limit=1)],
    priority=inngest.Priority(run="event.data.plan == 'enterprise' ? 600 : 0"))
def build_report(ctx: inngest.Context) -> str:
    return ctx.step.run("build", lambda: (time.sleep(2), ctx.event.data["plan"])[1])
