"""Prometheus metrics shared by every service loop (labelled by service), including consumer lag.

Lag comes from librdkafka's own statistics (``consumer_lag`` per partition), so it costs
nothing on the hot path.
"""

from __future__ import annotations

import json
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, start_http_server

RECORDS = Counter("pipeline_records_processed_total", "records processed", ["service", "topic"])
OUTPUTS = Counter("pipeline_records_produced_total", "records produced", ["service"])
DEAD_LETTERS = Counter("pipeline_dead_letters_total", "records sent to the dead-letter topic", ["service", "reason"])
BATCH_SECONDS = Histogram("pipeline_batch_seconds", "time to process and commit one batch", ["service"],
                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
LAG = Gauge("pipeline_consumer_lag", "records behind the end of the partition", ["service", "topic", "partition"])
RESTORE_SECONDS = Gauge("pipeline_restore_seconds", "time the last state rebuild took", ["service", "topic"])
RESTORE_RECORDS = Gauge("pipeline_restore_records", "records read by the last state rebuild", ["service", "topic"])
TX_ABORTS = Counter("pipeline_transaction_aborts_total", "aborted transactions", ["service"])

_started: set[int] = set()


def serve(port: int | None) -> None:
    """Expose /metrics on a port once per process (several services in ``pipeline dev`` share it)."""
    if port and port not in _started:
        start_http_server(port)
        _started.add(port)


def stats_callback(service: str):
    """A librdkafka ``stats_cb`` that turns per-partition ``consumer_lag`` into the lag gauge."""

    def on_stats(raw: str) -> None:
        stats: dict[str, Any] = json.loads(raw)
        for topic, tstats in stats.get("topics", {}).items():
            for part, pstats in tstats.get("partitions", {}).items():
                lag = pstats.get("consumer_lag", -1)
                if part != "-1" and lag is not None and lag >= 0:
                    LAG.labels(service, topic, part).set(lag)

    return on_stats
