"""bench/scale.py's pure helpers: the run-state status peek (against a full decode) and its latency figures."""

from __future__ import annotations

import io
import json

from fastavro import schemaless_writer

from bench.scale import hop_figures, latency_figures, log_marks
from bench.scale_io import StatusPeek, _zigzag
from pipeline.protocol.commands import start_command
from pipeline.run_owner import state as st
from pipeline.serde import RUN_STATE, Serde, default_catalog

serde = Serde()


def _states() -> list[dict]:
    """A run's states as the owner writes them: queued, running, sleeping, cancelled; long and non-ASCII fields so
    that the string lengths before the status take multi-byte varints."""
    event = {"data": {"importId": "ü" * 300}, "id": "01EV", "name": "contacts/import.requested", "ts": 1, "user": {}}
    cmd = start_command("RUN-é" * 40, "scale-import", json.dumps(event), 9_000, 10_000)
    started = st.start(cmd, "01EV" * 50, 10_000, start_timeout_ms=None).state
    assert started is not None
    running = st.dispatch(started, 11_000, finish_timeout_ms=None)
    sleeping = st.sleep(running, "wait-a-week", 10**12, 12_000).state
    assert sleeping is not None
    cancelled = st.cancel(sleeping, "cancel_on", "01CANCEL", 13_000).state
    assert cancelled is not None
    return [started, running, sleeping, cancelled]


def test_peek_reads_the_status_a_full_decode_reads() -> None:
    peek = StatusPeek()
    assert peek.plans, "the current RunState schema has only strings before its status"
    seen = []
    for state in _states():
        payload = serde.encode(RUN_STATE, state)
        assert peek.status(payload) == serde.decode_as(RUN_STATE, payload)["status"] == state["status"]
        seen.append(peek.status(payload))
    assert seen == ["Queued", "Running", "Sleeping", "Cancelled"]


def test_a_schema_it_cannot_skip_is_decoded_instead() -> None:
    schema = default_catalog().current[RUN_STATE].parsed
    moved = {**schema, "fields": [{"name": "extra", "type": ["null", "string"]}, *schema["fields"]]}
    assert StatusPeek.plan(moved) is None
    no_enum = {**schema, "fields": [f if f["name"] != "status" else {"name": "status", "type": "string"}
                                    for f in schema["fields"]]}
    assert StatusPeek.plan(no_enum) is None
    peek = StatusPeek()
    peek.plans.clear()  # as for a writer schema without a plan: the full decode answers
    payload = serde.encode(RUN_STATE, _states()[2])
    assert peek.status(payload) == "Sleeping"


def test_zigzag_varints() -> None:
    for value in (0, 1, -1, 63, -64, 64, 300, -300, 2**40, -(2**40)):
        buf = io.BytesIO()
        schemaless_writer(buf, "long", value)
        data = b"x" + buf.getvalue() + b"y"
        assert _zigzag(data, 1) == (value, len(data) - 1)


def test_latency_figures() -> None:
    ms = [float(x) for x in range(1, 101)]
    assert latency_figures("cancel", ms) == {"cancel_n": 100, "cancel_p50_ms": 50.0, "cancel_p90_ms": 90.0,
                                             "cancel_p99_ms": 99.0, "cancel_max_ms": 100.0}
    assert latency_figures("cancel", []) == {"cancel_n": 0}


def test_log_marks_split_a_restart() -> None:
    since = 1_800_000_000.0  # 2027-01-15T08:00:00Z
    lines = [
        '{"ts": "2027-01-15T07:59:59.000Z", "level": "info", "msg": "service started"}',  # the killed process
        "Traceback (most recent call last):",
        '{"ts": "2027-01-15T08:00:01.500Z", "level": "info", "msg": "service started"}',
        '{"ts": "2027-01-15T08:00:02.000Z", "level": "info", "msg": "partitions assigned"}',
        '{"ts": "2027-01-15T08:00:03.000Z", "level": "info", "msg": "state rebuilt", "records": 10, "seconds": 0.5}',
        '{"ts": "2027-01-15T08:00:04.250Z", "level": "info", "msg": "state rebuilt", "records": 5, "seconds": 0.25}',
        '{"ts": "2027-01-15T08:00:05.000Z", "level": "info", "msg": "partitions assigned"}',
    ]
    assert log_marks(lines, since) == {"service_started_s": 1.5, "partitions_assigned_s": 2.0,
                                       "state_rebuilt_s": 4.25, "rebuilt_records": 15, "rebuild_seconds": 0.75}
    assert log_marks(["not json", '{"msg": "state rebuilt"}'], since) == {}


def test_hop_figures() -> None:
    per_cancel = [{"produce": float(i), "matcher": 2.0, "canceller": 1.0, "owner": 3.0, "commit_and_read": 10.0 * i}
                  for i in range(1, 101)]
    figures = hop_figures(per_cancel)
    assert list(figures) == ["produce", "matcher", "canceller", "owner", "commit_and_read"]
    assert figures["produce"] == {"p50": 50.0, "p90": 90.0, "p99": 99.0, "max": 100.0}
    assert figures["commit_and_read"]["p99"] == 990.0 and figures["matcher"]["max"] == 2.0
    assert hop_figures([]) == {}
