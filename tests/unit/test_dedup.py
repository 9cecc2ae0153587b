"""The matcher's event-id dedup table (pure): duplicates by id within the window, same record not a duplicate."""

from __future__ import annotations

from pipeline.matcher.dedup import Seen, SeenEvents


def test_a_second_record_with_the_id_inside_the_window_is_a_duplicate() -> None:
    table = SeenEvents(window_ms=1000)
    assert not table.is_duplicate("a", offset=5, received_at=100)
    assert table.remember("a", 5, 100)
    assert table.is_duplicate("a", offset=9, received_at=1099)
    assert not table.is_duplicate("a", offset=9, received_at=1100)  # window over: a new event
    assert not table.is_duplicate("b", offset=9, received_at=200)


def test_reading_the_same_record_again_is_not_a_duplicate_and_writes_nothing() -> None:
    table = SeenEvents(window_ms=1000)
    table.remember("a", 5, 100)
    assert not table.is_duplicate("a", offset=5, received_at=100)  # a replay or a restart re-reads it
    assert not table.remember("a", 5, 100)


def test_expire_forgets_old_ids_in_order_and_returns_them() -> None:
    table = SeenEvents(window_ms=1000)
    for i, at in enumerate((100, 200, 900)):
        table.remember(f"e{i}", i, at)
    assert table.expire(now_ms=1150) == ["e0"]
    assert table.expire(now_ms=1201) == ["e1"]
    assert len(table) == 1 and not table.is_duplicate("e0", 7, 1201)


def test_a_window_restarted_after_expiry_moves_the_id_to_the_end() -> None:
    table = SeenEvents(window_ms=1000)
    table.remember("a", 1, 100)
    table.remember("b", 2, 500)
    assert table.remember("a", 3, 1200)  # past a's window: a new first record
    assert table.expire(now_ms=1600) == ["b"]
    assert table.is_duplicate("a", offset=4, received_at=1700)


def test_load_applies_the_changelog_with_tombstones() -> None:
    table = SeenEvents(window_ms=1000)
    table.load("a", Seen(1, 100))
    table.load("b", Seen(2, 150))
    table.load("a", None)
    assert len(table) == 1
    assert table.is_duplicate("b", offset=3, received_at=200)
    assert not table.is_duplicate("a", offset=3, received_at=200)
