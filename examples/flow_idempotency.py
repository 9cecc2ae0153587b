"""Idempotency: one charge per order id in 24 hours, however many times the checkout event is sent (with new
event ids, so event-id deduplication alone would not catch them).

    pipeline dev --app examples.flow_idempotency:app
    pipeline send shop/checkout.completed --data '{"order_id": "o-1", "cents": 1299}'   # charges
    pipeline send shop/checkout.completed --data '{"order_id": "o-1", "cents": 1299}'   # dropped: same order

The window counts in the broker's receive time (``PIPELINE_IDEMPOTENCY_WINDOW_MS``, 24 h by default).
"""

from __future__ import annotations

import pipeline

app = pipeline.Inngest(app_id="flow-idempotency")


@app.create_function(
    fn_id="charge-order",
    trigger=pipeline.TriggerEvent(event="shop/checkout.completed"),
    idempotency="event.data.order_id",
)
def charge_order(ctx: pipeline.Context) -> dict:
    order = ctx.event.data["order_id"]
    receipt = ctx.step.run("charge", lambda: {"order": order, "cents": ctx.event.data["cents"]})
    return receipt
