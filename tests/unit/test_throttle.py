"""Throttle (pure): GCRA and strict pacing, the definition's ranges, the queue order with priority."""

from __future__ import annotations

import datetime
import json

import pytest
from pydantic import ValidationError

import pipeline
from pipeline.protocol.commands import start_command
from pipeline.run_owner import state as st
from pipeline.run_owner.pacing import Pace
from pipeline.run_owner.throttle import order, waits_for_token


def _schedule(pace: Pace, arrivals: list[int]) -> list[int]:
    """Start times of runs arriving at ``arrivals`` when each starts as soon as the pace allows, in order."""
    state, starts, free = None, [], 0
    for at in arrivals:
        now = max(at, free)
        now = pace.allowed_at(state, now)
        state = pace.started(state, now)
        starts.append(now)
        free = now
    return starts


def test_gcra_starts_limit_plus_burst_at_once_then_one_per_emission() -> None:
    assert _schedule(Pace(limit=2, period_ms=10_000), [0] * 6) == [0, 0, 0, 5_000, 10_000, 15_000]
    assert _schedule(Pace(limit=2, period_ms=10_000, burst=3), [0] * 7) == [0, 0, 0, 0, 0, 5_000, 10_000]
    # Inngest's documented example: limit 2 per 6 s, burst 1: three at once, then one every 3 s
    assert _schedule(Pace(limit=2, period_ms=6_000, burst=1), [i * 500 for i in range(6)]) == \
        [0, 500, 1_000, 3_000, 6_000, 9_000]


def test_gcra_refills_while_idle_but_never_above_its_capacity() -> None:
    pace = Pace(limit=2, period_ms=10_000)
    assert _schedule(pace, [0, 0, 0, 60_000, 60_000, 60_000, 60_000]) == \
        [0, 0, 0, 60_000, 60_000, 60_000, 65_000]


def test_gcra_never_lets_a_start_come_early_in_any_window() -> None:
    pace = Pace(limit=3, period_ms=9_000, burst=2)
    starts = _schedule(pace, [i * 700 for i in range(40)])
    for i in range(len(starts)):
        for j in range(i + 1, len(starts)):  # at most limit + burst at once, then one per 3 s
            assert starts[j] - starts[i] >= (j - i - pace.limit - pace.burst + 1) * 3_000


def test_strict_allows_at_most_limit_in_any_rolling_period() -> None:
    pace = Pace(limit=2, period_ms=4_000, strict=True)
    starts = _schedule(pace, [0, 0, 0, 0, 0, 9_000])
    assert starts == [0, 0, 4_000, 4_000, 8_000, 9_000]
    assert all(starts[i + 2] - starts[i] >= 4_000 for i in range(len(starts) - 2))


def test_idle_says_when_a_key_limits_nothing_any_more() -> None:
    pace = Pace(limit=1, period_ms=1_000)
    state = pace.started(None, 0)
    assert not pace.idle(state, 500) and pace.idle(state, 1_000) and pace.idle(None, 0)


def test_the_definition_takes_ints_as_milliseconds_and_checks_ranges() -> None:
    assert pipeline.Throttle(limit=1, period=10_000).period_ms() == 10_000
    assert pipeline.Throttle(limit=1, period=datetime.timedelta(days=7)).burst == 1
    for bad in ({"limit": 0, "period": 1_000}, {"limit": 1, "period": 999},
                {"limit": 1, "period": datetime.timedelta(days=8)}, {"limit": 1, "period": 1_000, "burst": 0}):
        with pytest.raises(ValidationError):
            pipeline.Throttle(**bad)


def _fn() -> pipeline.Function:
    app = pipeline.Inngest(app_id="u")
    return app.create_function(fn_id="t", trigger=pipeline.TriggerEvent(event="a/b"),
                               throttle=pipeline.Throttle(limit=1, period=1_000, key="event.data.k"),
                               priority=pipeline.Priority(run="event.data.p"))(lambda ctx: None)


def _run(run_id: str, queued_at: int, priority: object) -> dict:
    event = {"id": run_id, "name": "a/b", "data": {"k": "x", "p": priority}, "ts": 0, "user": {}}
    tr = st.start(start_command(run_id, "u-t", json.dumps(event), queued_at, queued_at), run_id, queued_at,
                  start_timeout_ms=None)
    assert tr.state is not None
    return tr.state


def test_queue_order_is_scheduled_time_minus_priority() -> None:
    fn = _fn()
    runs = [_run("R1", 1_000, 0), _run("R2", 2_000, 0), _run("R3", 3_000, 600), _run("R4", 4_000, -5),
            _run("R5", 5_000, "high")]  # not a number: 0
    ranked = [e[2] for e in sorted(order(r, fn) for r in runs)]
    assert ranked == ["R3", "R1", "R2", "R5", "R4"]
    assert order(_run("R6", 0, 10_000), fn)[0] == -600_000  # clamped to 600 s


def test_a_run_waits_for_a_token_only_before_it_started() -> None:
    run = _run("R1", 0, 0)
    held = st.throttle_held(run, 5_000)
    assert waits_for_token(held) and held["wake_at"] == 5_000 and st.next_timer(held) == 5_000
    assert waits_for_token(st.throttle_gated(held, 5_010))
    assert not waits_for_token(st.throttle_released(held, 5_000))
    assert not waits_for_token(st.cancel(held, "api", None, 6_000).state)  # type: ignore[arg-type]
