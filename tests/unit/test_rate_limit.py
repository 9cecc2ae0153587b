"""Rate limit and idempotency without a broker: Inngest's GCRA arithmetic, the options' validation and compiling,
the owner partition they route to, and the run owner's decisions fed start commands directly (what it starts,
what it drops and records, what a dropped invoke answers, what a failing key does)."""

from __future__ import annotations

import datetime
import json
import time
from typing import Any

import pytest

import pipeline
from pipeline.apps.register import SyncRefused, read_sync
from pipeline.config import Settings
from pipeline.expr import EvalFailure
from pipeline.kafka import topics as t
from pipeline.kafka.emitter import Emitter
from pipeline.kafka.store import Store
from pipeline.protocol.sysevents import FUNCTION_FINISHED, FUNCTION_INVOKED
from pipeline.run_owner.gcra import admit
from pipeline.run_owner.limits import LimitTable
from pipeline.run_owner.owner import RunOwner
from pipeline.run_owner.rearm import rearm
from pipeline.sdk.app import Registry
from pipeline.sdk.definitions import DefinitionError
from pipeline.sdk.synced import synced_function
from pipeline.serde import DROPPED_EVENT, EVENT, RUN_COMMAND, Serde

from .fakes import FakeMessage, run_table, store_dir

SERDE = Serde()


# -- GCRA -------------------------------------------------------------------------------------------------------

def test_limit_one_admits_one_event_per_period() -> None:
    tat = admit(None, 1_000, 10_000, 1)
    assert tat == 11_000
    assert admit(tat, 1_001, 10_000, 1) is None
    assert admit(tat, 10_999, 10_000, 1) is None
    assert admit(tat, 11_000, 10_000, 1) == 21_000


def test_a_burst_of_a_tenth_then_one_per_emission_interval() -> None:
    """limit 10 per 60 s: Inngest's burst is 1, so two at once, then one every 6 s."""
    tat = None
    admitted = []
    for now in range(0, 6_000, 100):
        new = admit(tat, now, 60_000, 10, 1)
        if new is not None:
            tat = new
            admitted.append(now)
    assert admitted == [0, 0 + 100]
    assert admit(tat, 5_999, 60_000, 10, 1) is None
    assert admit(tat, 6_000, 60_000, 10, 1) is not None


def test_no_window_of_a_period_admits_more_than_limit_plus_burst() -> None:
    period, limit, burst = 10_000, 20, 2
    tat = None
    admitted: list[int] = []
    for now in range(0, 60_000, 37):
        new = admit(tat, now, period, limit, burst)
        if new is not None:
            tat = new
            admitted.append(now)
    for i, start in enumerate(admitted):
        inside = sum(1 for a in admitted[i:] if a < start + period)
        assert inside <= limit + burst
    assert len(admitted) >= 60_000 // (period // limit) - 1  # and it does admit at the rate


def test_a_stale_or_corrupt_tat_is_clamped() -> None:
    assert admit(10**15, 1_000, 10_000, 1) is None  # far in the future: clamped, still limited
    assert admit(-5, 100_000, 10_000, 1) == 110_000  # older than a period: as if absent


# -- definitions ------------------------------------------------------------------------------------------------

def test_rate_limit_validation_follows_inngest() -> None:
    assert pipeline.RateLimit(limit=1, period=60_000).period == datetime.timedelta(minutes=1)
    for period in (999, datetime.timedelta(hours=24, seconds=1)):
        with pytest.raises(ValueError, match="between 1 second and 24 hours"):
            pipeline.RateLimit(limit=1, period=period)
    with pytest.raises(ValueError):
        pipeline.RateLimit(limit=0, period=1000)


def test_bad_keys_fail_at_load_naming_the_option() -> None:
    app = pipeline.Inngest(app_id="unit-rl-bad")
    with pytest.raises(DefinitionError, match="rate_limit key"):
        app.create_function(fn_id="a", trigger=pipeline.TriggerEvent(event="x"),
                            rate_limit=pipeline.RateLimit(limit=1, period=1000, key="event.data.("))(lambda ctx: None)
    with pytest.raises(DefinitionError, match="idempotency"):
        app.create_function(fn_id="b", trigger=pipeline.TriggerEvent(event="x"), idempotency="  ")(lambda ctx: None)


app = pipeline.Inngest(app_id="unit-rl")


@app.create_function(fn_id="limited", trigger=pipeline.TriggerEvent(event="rl/go"),
                     rate_limit=pipeline.RateLimit(limit=1, period=datetime.timedelta(seconds=10),
                                                   key="event.data.user"))
def limited(ctx: pipeline.ContextSync) -> str:
    return "ran"


@app.create_function(fn_id="once", trigger=pipeline.TriggerEvent(event="rl/once"), idempotency="event.data.order")
def once(ctx: pipeline.ContextSync) -> str:
    return "ran"


@app.create_function(fn_id="cancellable", trigger=pipeline.TriggerEvent(event="rl/cancellable"),
                     cancel=[pipeline.Cancel(event="rl/stop", match="data.user")],
                     rate_limit=pipeline.RateLimit(limit=1, period=60_000))
def cancellable(ctx: pipeline.ContextSync) -> str:
    return "ran"


@app.create_function(fn_id="both", trigger=pipeline.TriggerEvent(event="rl/both"), idempotency="event.data.order",
                     rate_limit=pipeline.RateLimit(limit=20, period=60_000))
def both(ctx: pipeline.ContextSync) -> str:
    return "ran"


def test_owner_key_routes_one_flow_key_to_one_partition() -> None:
    event = {"data": {"user": "u1", "order": 7}}
    assert limited.owner_key(event) == f'{limited.id}\x1f"u1"'
    assert once.owner_key(event) == f"{once.id}\x1f7"
    assert both.owner_key(event) == both.id  # an unkeyed option: every event of the function meets at one owner
    with pytest.raises(EvalFailure):
        limited.owner_key({"data": {}})  # a key that fails: the matcher dead-letters the event


def test_sync_reads_rate_limit_and_idempotency_in_both_spellings() -> None:
    def body(**options: Any) -> dict[str, Any]:
        return {"appName": "s", "url": "http://a/api", "functions": [{
            "id": "s-f", "name": "f", "triggers": [{"event": "e"}],
            "steps": {"step": {"runtime": {"url": "http://a/api?fnId=s-f"}}}, **options}]}

    for options in ({"rateLimit": {"limit": 3, "period": "1m", "key": "event.data.k"}, "idempotency": "event.id"},
                    {"rate_limit": {"limit": 3, "period": "1m", "key": "event.data.k"}, "idempotency": "event.id"}):
        (record,) = read_sync(body(**options), 0).functions
        fn = synced_function(record)
        assert fn.rate_limit is not None and (fn.rate_limit.limit, fn.rate_limit.period_ms) == (3, 60_000)
        assert fn.rate_limit.key is not None and fn.rate_limit.key.source == "event.data.k"
        assert fn.idempotency is not None and fn.idempotency.source == "event.id"
    with pytest.raises(SyncRefused, match="between 1s and 24h"):
        read_sync(body(rateLimit={"limit": 1, "period": "25h"}), 0)


# -- the run owner's decisions ----------------------------------------------------------------------------------

def _owner(window_ms: int = 24 * 3600 * 1000) -> tuple[RunOwner, Emitter]:
    settings = Settings(gate_max_wait_ms=0, idempotency_window_ms=window_ms)
    owner = RunOwner(Registry([app]), settings)
    owner.tables[0] = run_table()
    owner.admission.tables[0] = LimitTable(Store(store_dir("limits-") / "limits-0"), SERDE)
    owner.listening._partitions = 3  # cancel-index's partition count, asked of Kafka otherwise
    rearm(owner, 0, time.time_ns() // 1_000_000)
    return owner, Emitter(SERDE, settings)


def _start(fn: Any, n: int, data: dict[str, Any], received_at: int, name: str | None = None) -> FakeMessage:
    event = {"id": f"e{n}", "name": name or fn.triggers[0].event, "data": data, "user": {}, "ts": received_at}
    return FakeMessage(SERDE.encode(RUN_COMMAND, {
        "kind": "start", "run_id": f"r{n}", "function_id": fn.id, "ts": received_at, "event": json.dumps(event),
        "received_at": received_at, "reason": None, "source_id": None, "attempt": 0, "step_id": None}))


def _sent(out: Emitter, topic: str) -> list[tuple[Any, bytes | None]]:
    return [(key, payload) for (tp, key, payload, _p, _h) in out._pending if tp == topic]


def test_over_the_limit_is_dropped_and_recorded_per_key() -> None:
    owner, out = _owner()
    for n, (user, at) in enumerate([("a", 0), ("a", 500), ("b", 600), ("a", 9_999), ("a", 10_000)]):
        owner.process(_start(limited, n, {"user": user}, 1_000_000 + at), out)
    assert sorted(owner.tables[0]._live) == ["r0", "r2", "r4"]
    dropped = [SERDE.decode_as(DROPPED_EVENT, v) for _, v in _sent(out, Settings().topic(t.DROPPED_EVENTS)) if v]
    assert [(d["run_id"], d["reason"], d["key"]) for d in dropped] == [("r1", "rate_limit", '"a"'),
                                                                      ("r3", "rate_limit", '"a"')]
    assert owner.admission.dropped == 2


def test_a_key_of_false_is_exempt() -> None:
    owner, out = _owner()
    for n in range(3):
        owner.process(_start(limited, n, {"user": False}, 1_000_000 + n), out)
    assert len(owner.tables[0]._live) == 3 and owner.admission.dropped == 0


def test_idempotency_one_run_per_key_per_window_and_no_rate_slot_for_a_duplicate() -> None:
    owner, out = _owner(window_ms=5_000)
    starts = [(once, 0, 7, 0), (once, 1, 7, 4_999), (once, 2, 8, 10), (once, 3, 7, 5_000),
              (both, 4, 1, 0), (both, 5, 1, 1), (both, 6, 2, 2), (both, 7, 3, 3), (both, 8, 4, 4)]
    for fn, n, order, at in starts:
        owner.process(_start(fn, n, {"order": order}, 1_000_000 + at), out)
    # 20 a minute admits 3 at once (a burst of 2): r5, a duplicate of r4, is dropped by idempotency without
    # using one, so r6 and r7 get the other two and r8 is the one the rate limit drops
    assert sorted(owner.tables[0]._live) == ["r0", "r2", "r3", "r4", "r6", "r7"]
    reasons = {SERDE.decode_as(DROPPED_EVENT, v)["run_id"]: SERDE.decode_as(DROPPED_EVENT, v)["reason"]
               for _, v in _sent(out, Settings().topic(t.DROPPED_EVENTS)) if v}
    assert reasons == {"r1": "idempotency", "r5": "idempotency", "r8": "rate_limit"}


def test_a_dropped_invoke_fails_its_caller() -> None:
    owner, out = _owner()
    owner.process(_start(limited, 0, {"user": "a"}, 1_000_000), out)
    data = {"user": "a", "_inngest": {"fn_id": limited.id, "invoke_correlation_id": "parent.step-1"}}
    owner.process(_start(limited, 1, data, 1_000_001, name=FUNCTION_INVOKED), out)
    (finished,) = [SERDE.decode_as(EVENT, v) for _, v in _sent(out, Settings().topic(t.SYSTEM_EVENTS)) if v]
    assert finished["name"] == FUNCTION_FINISHED
    body = json.loads(finished["data"])
    assert body["invoke_correlation_id"] == "parent.step-1"
    assert body["error"] == {"name": "Error", "message": "invoked function is rate limited"}


def test_a_key_that_fails_raises_and_changes_nothing() -> None:
    owner, out = _owner()
    with pytest.raises(EvalFailure):
        owner.process(_start(limited, 0, {}, 1_000_000), out)
    owner.discard()
    assert list(owner.admission.tables[0].store.scan(b"", b"\xff")) == []


def test_the_state_survives_a_reopened_store_and_expired_entries_are_swept() -> None:
    owner, out = _owner()
    owner.process(_start(limited, 0, {"user": "a"}, 1_000_000), out)
    table = owner.admission.tables[0]
    table.commit(None)
    path = table.store.path
    table.close()
    owner.admission.tables[0] = LimitTable(Store(path), SERDE)
    owner.process(_start(limited, 1, {"user": "a"}, 1_000_001), out)
    assert owner.admission.dropped == 1
    owner.admission.tick(out, 1_000_000 + 10_000 + 3_600_001)
    tombstones = [k for k, v in _sent(out, Settings().topic(t.RATE_LIMITS)) if v is None]
    assert tombstones == [f'{limited.id}\x1frate_limit\x1f"a"']


def test_the_examples_load_with_their_options() -> None:
    from examples.flow_idempotency import charge_order
    from examples.flow_rate_limit import synchronize_data

    assert synchronize_data.rate_limit is not None and synchronize_data.rate_limit.period_ms == 4 * 3600 * 1000
    assert charge_order.idempotency is not None and charge_order.idempotency.source == "event.data.order_id"
    assert synchronize_data.owner_key({"data": {"company_id": "acme"}}) == f'{synchronize_data.id}\x1f"acme"'


def test_a_dropped_run_s_cancel_listeners_are_tombstoned() -> None:
    """The matcher registered them with the start; a dropped start must not leave them in the join for a year."""
    owner, out = _owner()
    owner.process(_start(cancellable, 0, {"user": "u"}, 1_000_000), out)
    owner.process(_start(cancellable, 1, {"user": "u"}, 1_000_001), out)
    index = Settings().topic(t.CANCEL_INDEX)
    tombstones = [key for key, value in _sent(out, index) if value is None]
    assert len(tombstones) == 1 and tombstones[0].endswith("\x00r1")


def test_a_start_that_fails_after_its_admit_puts_the_limit_state_back(monkeypatch: pytest.MonkeyPatch) -> None:
    owner, out = _owner()

    def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the run's first state could not be written")

    monkeypatch.setattr(owner, "apply", boom)
    with pytest.raises(RuntimeError):
        owner.process(_start(limited, 0, {"user": "a"}, 1_000_000), out)
    owner.discard()
    out.clear()
    monkeypatch.undo()
    owner.process(_start(limited, 1, {"user": "a"}, 1_000_001), out)  # the failed admit left nothing behind
    assert "r1" in owner.tables[0]._live and owner.admission.dropped == 0


def test_the_api_reads_back_at_most_max_back_drops_per_partition() -> None:
    from confluent_kafka import TopicPartition

    from pipeline.api.dropped import DroppedEvents

    class Ends:
        def get_watermark_offsets(self, tp: TopicPartition, timeout: float) -> tuple[int, int]:
            return 0, 120_000

    tail = DroppedEvents("unused:9092", "dropped-events", max_back=50_000)
    assert tail._start(Ends(), TopicPartition("dropped-events", 0, 10)) == 70_000  # type: ignore[arg-type]
    assert tail._start(Ends(), TopicPartition("dropped-events", 0, 100_000)) == 100_000  # type: ignore[arg-type]
    assert tail._start(Ends(), TopicPartition("dropped-events", 0, -1)) == 120_000  # type: ignore[arg-type]
