"""An app that maps a user's own topic to events (its topic comes from the environment: one per test)."""

from __future__ import annotations

import os

import pipeline

app = pipeline.Inngest(app_id="src")

app.create_source("orders", topic=os.environ.get("SOURCE_TOPIC", "orders"),
                  name="'shop/order.' + record.value.kind",
                  data="{'order': record.value.id, 'key': record.key}")
