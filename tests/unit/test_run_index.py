"""The run index (in a state store, no broker): pages newest first, per function and status, moving runs as their
status changes."""

from __future__ import annotations

from pipeline.api.run_index import RunIndex
from pipeline.kafka.store import Store

from .fakes import store_dir


def new_index() -> RunIndex:
    return RunIndex(Store(store_dir("api-index-") / "runs"))


def state(i: int, fn: str = "f", status: str = "Running") -> dict:
    return {"run_id": f"r{i:06d}", "function_id": fn, "status": status, "queued_at": 1_000 + i}


def test_pages_newest_first_with_a_cursor_and_filters() -> None:
    index = new_index()
    for i in range(10):
        index.add(state(i, "f" if i % 2 else "g"))
    ids, cursor = index.page(None, None, limit=4)
    assert ids == ["r000009", "r000008", "r000007", "r000006"] and cursor is not None
    ids, cursor = index.page(None, None, limit=4, cursor=cursor)
    assert ids == ["r000005", "r000004", "r000003", "r000002"]
    last_ids, last_cursor = index.page(None, None, limit=4, cursor=cursor)
    assert last_ids == ["r000001", "r000000"] and last_cursor is None  # the end
    assert index.page("f", None, limit=10)[0] == ["r000009", "r000007", "r000005", "r000003", "r000001"]
    assert index.page(None, None, limit=10, since_ms=1_005, until_ms=1_008)[0] == ["r000007", "r000006", "r000005"]


def test_a_status_change_moves_the_run_between_views() -> None:
    index = new_index()
    old = state(1)
    index.add(old)
    index.store.commit()
    index.remove(old)
    index.add(state(1, status="Cancelled"))
    assert index.page(None, "Running", limit=5)[0] == []
    assert index.page("f", "Cancelled", limit=5)[0] == ["r000001"] and index.functions == {"f": 1}


def test_pages_of_100000_runs_walk_the_whole_view_once() -> None:
    index = new_index()
    for i in range(100_000):
        index.add(state(i, f"f{i % 10}", "Completed" if i % 3 else "Failed"))
    index.store.commit()  # as the API's table does after each batch it reads
    seen: list[str] = []
    cursor = None
    while True:
        ids, cursor = index.page("f3", "Failed", limit=500, cursor=cursor)
        seen += ids
        if cursor is None:
            break
    expected = [f"r{i:06d}" for i in range(99_999, -1, -1) if i % 10 == 3 and i % 3 == 0]
    assert seen == expected
