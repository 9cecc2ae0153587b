"""The matcher's event-id dedup table (in a state store, no broker): duplicates by id within the window, same record
not a duplicate."""

from __future__ import annotations

from pipeline.kafka.store import Store
from pipeline.matcher.dedup import Seen, SeenEvents

from .fakes import store_dir


def seen_events(window_ms: int) -> SeenEvents:
    return SeenEvents(Store(store_dir("ids-") / "ids"), window_ms)


def test_a_second_record_with_the_id_inside_the_window_is_a_duplicate() -> None:
    table = seen_events(1000)
    assert not table.is_duplicate("a", offset=5, received_at=100)
    assert table.remember("a", 5, 100)
    assert table.is_duplicate("a", offset=9, received_at=1099)
    assert not table.is_duplicate("a", offset=9, received_at=1100)  # window over: a new event
    assert not table.is_duplicate("b", offset=9, received_at=200)


def test_reading_the_same_record_again_is_not_a_duplicate_and_writes_nothing() -> None:
    table = seen_events(1000)
    table.remember("a", 5, 100)
    assert not table.is_duplicate("a", offset=5, received_at=100)  # a replay or a restart re-reads it
    assert not table.remember("a", 5, 100)


def test_expire_forgets_old_ids_in_order_and_returns_them() -> None:
    table = seen_events(1000)
    for i, at in enumerate((100, 200, 900)):
        table.remember(f"e{i}", i, at)
    assert table.expire(now_ms=1150) == ["e0"]
    assert table.expire(now_ms=1201) == ["e1"]
    assert len(table) == 1 and not table.is_duplicate("e0", 7, 1201)


def test_a_window_restarted_after_expiry_moves_the_id_to_the_end() -> None:
    table = seen_events(1000)
    table.remember("a", 1, 100)
    table.remember("b", 2, 500)
    assert table.remember("a", 3, 1200)  # past a's window: a new first record
    assert table.expire(now_ms=1600) == ["b"]
    assert table.is_duplicate("a", offset=4, received_at=1700)


def test_load_applies_the_changelog_with_tombstones() -> None:
    table = seen_events(1000)
    table.restore("a", Seen(1, 100))
    table.restore("b", Seen(2, 150))
    table.restore("a", None)
    assert len(table) == 1
    assert table.is_duplicate("b", offset=3, received_at=200)
    assert not table.is_duplicate("a", offset=3, received_at=200)


def test_written_entries_survive_a_reopen_only_once_committed() -> None:
    table = seen_events(1000)
    table.remember("a", 1, 100)
    table.commit(5)
    table.remember("b", 2, 150)
    path = table.store.path
    table.close()  # "b" was never committed
    again = SeenEvents(Store(path), 1000)
    assert len(again) == 1 and again.is_duplicate("a", 3, 200) and not again.is_duplicate("b", 3, 200)


def test_an_aborted_entry_is_forgotten_though_it_was_the_last_id_read() -> None:
    """The table keeps the last id it read in memory (one store read per event): an abort must drop it too."""
    table = seen_events(1000)
    assert not table.is_duplicate("a", offset=5, received_at=100)
    assert table.remember("a", 5, 100)
    table.abort()
    assert not table.is_duplicate("a", offset=9, received_at=200)
    assert table.remember("a", 9, 200) and table.is_duplicate("a", offset=10, received_at=300)
    table.commit(11)
    table.remember("b", 12, 400)
    table.close()
    again = SeenEvents(Store(table.store.path), 1000)
    assert again.is_duplicate("a", 10, 300) and not again.is_duplicate("b", 13, 500)
