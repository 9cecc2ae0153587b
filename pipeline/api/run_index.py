"""Sorted views of the run table for paging: newest first, by function, by status, or both.

Each view is a ``SortedList`` of ``(-queued_at, run_id)``, kept up to date as states change (a status change
moves a run between views), so a page costs a bisection and the page itself, never a scan of every run: the
dev UI stays fast with 100,000 runs. Pure (no Kafka); :class:`pipeline.api.tables.RunTable` feeds it.
"""

from __future__ import annotations

from typing import Any

from sortedcontainers import SortedList

Entry = tuple[int, str]


class RunIndex:
    def __init__(self) -> None:
        self.views: dict[tuple[str | None, str | None], SortedList] = {}
        self.functions: dict[str, int] = {}  # function id -> runs

    def _keys(self, state: dict[str, Any]) -> list[tuple[str | None, str | None]]:
        fid, status = state["function_id"], state["status"]
        return [(None, None), (fid, None), (None, status), (fid, status)]

    def add(self, state: dict[str, Any]) -> None:
        entry = (-state["queued_at"], state["run_id"])
        for key in self._keys(state):
            view = self.views.get(key)
            if view is None:
                view = self.views[key] = SortedList()
            view.add(entry)
        self.functions[state["function_id"]] = self.functions.get(state["function_id"], 0) + 1

    def remove(self, state: dict[str, Any]) -> None:
        entry = (-state["queued_at"], state["run_id"])
        for key in self._keys(state):
            view = self.views.get(key)
            if view is not None:
                view.discard(entry)
        left = self.functions.get(state["function_id"], 0) - 1
        if left > 0:
            self.functions[state["function_id"]] = left
        else:
            self.functions.pop(state["function_id"], None)

    def page(self, function_id: str | None, status: str | None, *, limit: int, cursor: Entry | None = None,
             since_ms: int | None = None, until_ms: int | None = None) -> tuple[list[str], Entry | None]:
        """Run ids, newest first, after ``cursor`` (the last entry of the previous page), queued in
        [since, until); and the cursor of the next page (None at the end)."""
        view = self.views.get((function_id, status))
        if view is None:
            return [], None
        start = (-(until_ms - 1), "") if until_ms is not None else (-(1 << 62), "")
        if cursor is not None and cursor > start:
            start = cursor
        i = view.bisect_right(start) if cursor is not None else view.bisect_left(start)
        out: list[Entry] = []
        for entry in view.islice(i, i + limit + 1):
            if since_ms is not None and -entry[0] < since_ms:
                break
            out.append(entry)
        more = len(out) > limit
        out = out[:limit]
        return [e[1] for e in out], (out[-1] if more and out else None)
