"""Operator time and offset specs (pure)."""

from __future__ import annotations

import pytest

from pipeline.ops.positions import BadPosition, Position, parse_offsets, parse_position, parse_time

NOW = 1_800_000_000_000


def test_times_iso_relative_and_ms() -> None:
    assert parse_time("2026-11-25T10:00:00Z") == 1795600800000
    assert parse_time("2026-11-25T10:00:00") == 1795600800000  # no zone: UTC
    assert parse_time("2026-11-25T11:00:00+01:00") == 1795600800000
    assert parse_time("-2h", NOW) == NOW - 7_200_000
    assert parse_time("-30m", NOW) == NOW - 1_800_000
    assert parse_time("-1.5s", NOW) == NOW - 1500
    assert parse_time("now", NOW) == NOW and parse_time("1700000000000") == 1_700_000_000_000
    with pytest.raises(BadPosition, match="ISO-8601"):
        parse_time("yesterday")


def test_positions_and_offsets() -> None:
    assert parse_position("0:10,2:5") == Position(offsets=((0, 10), (2, 5)))
    assert parse_position("0:10,2:5").offset_for(2) == 5 and parse_position("0:10").offset_for(1) is None
    assert parse_position("-1h", NOW) == Position(time_ms=NOW - 3_600_000)
    assert parse_offsets("0") == Position(every=0) and parse_offsets("7").offset_for(3) == 7
    with pytest.raises(BadPosition):
        parse_offsets("-1h")
