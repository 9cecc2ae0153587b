"""Batches: page views written in bulk, up to 100 per run or every 5 s (inngest-py's ``batch_events``).

The handler gets ``ctx.events`` (the batch; ``ctx.event`` is its first). Only events of ``"kind": "view"`` are
batched: for any other (a missing field too) the ``if`` is false, so it runs alone, at once. A filling batch is on
the dev UI's Pending page.

Run it:  pipeline dev --app examples.flow_batch:app
Then:    for i in $(seq 1 7); do pipeline send site/page.viewed --data "{\"kind\": \"view\", \"path\": \"/p$i\"}"; done
         (one run with the 7 views, 5 s after the first)
"""

from __future__ import annotations

import datetime

import pipeline

app = pipeline.Inngest(app_id="flow-batch")


@app.create_function(
    fn_id="record-views",
    trigger=pipeline.TriggerEvent(event="site/page.viewed"),
    batch_events=pipeline.Batch(max_size=100, timeout=datetime.timedelta(seconds=5),
                                if_exp="event.data.kind == 'view'"),
)
def record_views(ctx: pipeline.Context) -> int:
    rows = [{"path": e.data.get("path"), "ts": e.ts} for e in ctx.events]
    return ctx.step.run("insert", lambda: len(rows))  # one INSERT of every row
