"""Where a cancel spends its time, hop by hop, read back from the topics after a `bench/steps.py` variant.

For each cancelled sleeper: the cancel event's receive time (``events``, LogAppendTime), when the matcher sent
its signal (``cancel-index`` record time), when the canceller sent the cancel command (``run-commands`` record
time), when the run owner applied it (the run's ``ended_at``), and when the bench's read-committed reader got
``function.cancelled``. Record times are the producers' clocks, which on one machine are the same clock.
The last hop is the owner's commit plus the reader. Kept apart from steps.py: a diagnostic, not a target.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, TopicPartition

from bench._common import percentile
from pipeline.serde import CANCEL_SIGNAL, EVENT, RUN_COMMAND, Serde
from pipeline.serde.models import event_record_to_dict

HOPS = ("matcher", "canceller", "owner", "commit_and_read")


def _records(servers: str, topic: str) -> list[Any]:
    """Every record of ``topic``, uncommitted ones too (a record's time is when it was produced)."""
    c = Consumer({"bootstrap.servers": servers, "group.id": "bench-cancel-path", "enable.auto.commit": False,
                  "isolation.level": "read_uncommitted", "enable.partition.eof": True})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        c.assign([TopicPartition(topic, p, -2) for p in parts])
        out, eof = [], set()
        while len(eof) < len(parts):
            for msg in c.consume(1000, timeout=1.0):
                if msg.error() is not None:
                    eof.add(msg.partition())
                elif msg.value() is not None:
                    out.append(msg)
        return out
    finally:
        c.close()


def cancel_hops(servers: str, topic: Any, runs: dict[str, dict[str, Any]],
                cancelled: list[tuple[float, dict[str, Any]]], ingest_end: float) -> dict[str, dict[str, Any]]:
    """Per phase (cancels received during the ingest, i.e. before ``ingest_end``, and after it) and hop: p50 /
    p90 / max in ms over the cancels in ``cancelled`` (arrival time, function.cancelled event). ``topic`` maps a
    short topic name to the stack's full one; ``runs`` is each run's latest state."""
    serde = Serde()
    received = {}
    for msg in _records(servers, topic("events")):
        record = serde.decode_as(EVENT, msg.value())
        if record["name"].endswith(".cancel"):
            received[event_record_to_dict(record)["id"]] = msg.timestamp()[1]
    signalled = {}
    for msg in _records(servers, topic("cancel-index")):
        name, record = serde.decode(msg.value())
        if name == CANCEL_SIGNAL:
            signalled.setdefault(record["event_id"], msg.timestamp()[1])
    commanded = {}
    for msg in _records(servers, topic("run-commands")):
        name, record = serde.decode(msg.value())
        if name == RUN_COMMAND and record["kind"] == "cancel":
            commanded.setdefault(record["run_id"], (record["source_id"], msg.timestamp()[1]))
    phases: dict[str, dict[str, list[float]]] = {p: {h: [] for h in HOPS} for p in ("during_ingest", "while_steps_run")}
    for at, ev in cancelled:
        run_id = ev["data"]["run_id"]
        if run_id not in commanded or run_id not in runs:
            continue
        cancel_id, command_at = commanded[run_id]
        if cancel_id not in received or cancel_id not in signalled:
            continue
        ended_at = runs[run_id]["ended_at"]
        hops = phases["during_ingest" if received[cancel_id] < ingest_end * 1000 else "while_steps_run"]
        hops["matcher"].append(signalled[cancel_id] - received[cancel_id])
        hops["canceller"].append(command_at - signalled[cancel_id])
        hops["owner"].append(ended_at - command_at)
        hops["commit_and_read"].append(at * 1000 - ended_at)
    return {phase: {h: {"p50": round(percentile(v, 50), 1), "p90": round(percentile(v, 90), 1), "max": round(max(v), 1)}
                    for h, v in hops.items() if v}
            for phase, hops in phases.items()}
