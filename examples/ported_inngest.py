"""An inngest-py app, ported by changing one line: ``import inngest`` became ``import pipeline as inngest``.

Everything else is inngest-py 0.5 code as written for Inngest: the client, an async and a sync function,
``ctx.group.parallel``, ``step.invoke``, an int of milliseconds and a timedelta for ``step.sleep``,
``step.wait_for_event``, ``step.send_event``, ``NonRetriableError``, ``on_failure``, a cancel rule and a cron.

Run it:  pipeline dev --app examples.ported_inngest:inngest_client
Then:    pipeline send orders/placed --data '{"order_id": "o-1", "amount": 30}'
         pipeline send orders/approved --data '{"order_id": "o-1"}'
"""

from __future__ import annotations

import datetime
import logging

import pipeline as inngest  # the only line that differs from the inngest-py original

inngest_client = inngest.Inngest(app_id="orders-app", logger=logging.getLogger("orders"), is_production=False)


def check_stock(order_id: str) -> bool:
    return not order_id.endswith("-out")


def quote(amount: int) -> int:
    return amount + 5  # shipping


def _refund(ctx: inngest.Context) -> None:
    ctx.logger.warning("refunding after %s failed", ctx.event.data["function_id"])


@inngest_client.create_function(fn_id="charge-card", trigger=inngest.TriggerEvent(event="payments/charge"),
                                retries=2, on_failure=_refund)
def charge_card(ctx: inngest.Context) -> dict:
    amount = ctx.event.data["amount"]
    if amount <= 0:
        raise inngest.NonRetriableError("amount must be positive")
    return {"charged": amount}


@inngest_client.create_function(
    fn_id="place-order",
    trigger=inngest.TriggerEvent(event="orders/placed"),
    cancel=[inngest.Cancel(event="orders/cancelled", if_exp="async.data.order_id == event.data.order_id")],
)
async def place_order(ctx: inngest.Context) -> dict:
    order_id = ctx.event.data["order_id"]
    ctx.logger.info("placing order %s", order_id)
    in_stock, total = await ctx.group.parallel((
        lambda: ctx.step.run("check-stock", check_stock, order_id),
        lambda: ctx.step.run("quote", quote, ctx.event.data["amount"]),
    ))
    if not in_stock:
        return {"status": "out of stock"}
    payment = await ctx.step.invoke("charge", function=charge_card, data={"amount": total})
    await ctx.step.sleep("cool-off", 500)  # milliseconds, as in inngest-py
    approval = await ctx.step.wait_for_event(
        "approval", event="orders/approved", if_exp="async.data.order_id == event.data.order_id",
        timeout=datetime.timedelta(minutes=10))
    if approval is None:
        return {"status": "not approved in time"}
    await ctx.step.send_event("shipped", inngest.Event(name="orders/shipped", data={"order_id": order_id}))
    return {"status": "shipped", "charged": payment["charged"], "approved_by": approval.data.get("by")}


@inngest_client.create_function(fn_id="nightly-report", trigger=inngest.TriggerCron(cron="TZ=UTC 0 2 * * *"))
def nightly_report(ctx: inngest.Context) -> str:
    return ctx.step.run("report", lambda: "report for " + datetime.date.today().isoformat())
