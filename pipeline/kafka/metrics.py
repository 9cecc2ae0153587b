"""Prometheus metrics shared by every service loop (labelled by service), including consumer lag.

Lag comes from librdkafka's own statistics (``consumer_lag`` per partition), so it costs
nothing on the hot path.
"""

from __future__ import annotations

import json
from collections.abc import Callable
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
WATCHDOG_TRIPS = Counter("pipeline_watchdog_trips_total", "loops found making no progress (the process then exits)",
                         ["service"])
DUPLICATE_EVENTS = Counter("pipeline_duplicate_events_total",
                           "events skipped by the matcher: an event with the same id was received within the dedup "
                           "window")
URGENT_RECORDS = Counter("pipeline_urgent_records_total",
                         "records processed ahead of the backlog and committed at once (cancellations)", ["service"])
TX_ABORTS = Counter("pipeline_transaction_aborts_total", "aborted transactions", ["service"])

# the run owner and the workers
RUNS_WAITING = Gauge("pipeline_runs_waiting", "runs waiting at a point, by what they wait for", ["what"])
GATE_LAG = Gauge("pipeline_cancel_path_lag_seconds",
                 "how far behind now the cancel path was last proven to have passed (watermark lag)")
GATE_WAIT = Histogram("pipeline_gate_wait_seconds", "time a run waited for the cancel path to pass its point",
                      buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 60))
GATE_TIMEOUTS = Counter("pipeline_gate_timeouts_total", "runs that went on after the gate's maximum wait")
FLOW_DROPPED = Counter("pipeline_flow_dropped_events_total",
                       "events a function's rate limit or idempotency dropped before any run", ["function", "reason"])
STALE_OUTCOMES = Counter("pipeline_stale_outcomes_total",
                         "worker outcomes ignored (late, duplicate or for an ended run)")
INVOCATIONS = Counter("pipeline_worker_invocations_total", "handler invocations run by workers", ["kind"])
INFLIGHT = Gauge("pipeline_worker_inflight", "invocations running in this worker")
INVOCATION_SECONDS = Histogram("pipeline_worker_invocation_seconds", "time one invocation took in user code",
                               buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 120, 600))

_started: set[int] = set()


def serve(port: int | None) -> None:
    """Expose /metrics on a port once per process (several services in ``pipeline dev`` share it)."""
    if port and port not in _started:
        start_http_server(port)
        _started.add(port)


def stats_callback(service: str, positions: dict[tuple[str, int], int]) -> Callable[[str], None]:
    """A librdkafka ``stats_cb`` that sets the lag gauge per assigned partition.

    Lag = the partition's last stable offset (what a read_committed consumer can reach) minus
    the position the service has processed up to. librdkafka's own ``consumer_lag`` cannot
    be used: offsets are committed through the producer's transaction, which the consumer's
    statistics never see. ``positions`` is the loop's live map of processed positions.
    """

    def on_stats(raw: str) -> None:
        stats: dict[str, Any] = json.loads(raw)
        for topic, tstats in stats.get("topics", {}).items():
            for part, pstats in tstats.get("partitions", {}).items():
                if part == "-1" or pstats.get("fetch_state") in (None, "none", "stopped"):
                    continue
                end = pstats.get("ls_offset", -1)
                if end is None or end < 0:
                    end = pstats.get("hi_offset", -1)
                pos = positions.get((topic, int(part)))
                if pos is None:
                    pos = pstats.get("committed_offset", -1)
                if end >= 0 and pos is not None and pos >= 0:
                    LAG.labels(service, topic, part).set(max(0, end - pos))
                elif end >= 0:
                    LAG.labels(service, topic, part).set(end - max(0, pstats.get("lo_offset", 0)))

    return on_stats
