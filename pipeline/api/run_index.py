"""Sorted views of the API's run table for paging: newest first, by function, by status, or both.

Each view is a range of keys in the API's state store (:mod:`pipeline.kafka.store`): ``v<function>\\x1f<status>\\0``
then the run's queued time counted down (so that ascending keys are newest first) and its id, kept up to date as
states change (a status change moves a run between views). A page costs a seek and the page itself, never a scan
of every run, and a million runs cost disk, not memory. No Kafka here; :class:`pipeline.api.tables.RunTable`
feeds it.
"""

from __future__ import annotations

from typing import Any

from ..kafka.store import Store

Entry = tuple[int, str]  # (-queued_at, run id): a page's cursor

_VIEW, _FUNCTION = b"v", b"f"
_TOP = 1 << 62  # queued times count down from here, so the newest sorts first
_PREFIXES_KEPT = 4096  # (function, status) pairs whose view prefixes are kept


def _view(function_id: str | None, status: str | None) -> bytes:
    return _VIEW + (function_id or "").encode() + b"\x1f" + (status or "").encode() + b"\x00"


def _entry_key(view: bytes, entry: Entry) -> bytes:
    return view + _tail(-entry[0], entry[1])


def _tail(queued_at: int, run_id: str) -> bytes:
    """What follows a view's prefix in a run's entry: its queued time counted down, and its id."""
    return (_TOP - queued_at).to_bytes(8, "big") + run_id.encode()


class RunIndex:
    """The views and per-function run counts, in ``store`` (written through its overlay)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        # (function, status) -> its four views' key prefixes: a few functions and statuses make most states, and
        # building the prefixes anew was a good part of each index update
        self._prefixes: dict[tuple[str, str], tuple[bytes, bytes, bytes, bytes]] = {}

    def _views(self, state: dict[str, Any]) -> tuple[bytes, bytes, bytes, bytes]:
        at = (state["function_id"], state["status"])
        views = self._prefixes.get(at)
        if views is None:
            if len(self._prefixes) >= _PREFIXES_KEPT:
                self._prefixes.clear()
            fid, status = at
            views = self._prefixes[at] = (_view(None, None), _view(fid, None), _view(None, status), _view(fid, status))
        return views

    def add(self, state: dict[str, Any]) -> None:
        tail = _tail(state["queued_at"], state["run_id"])
        for view in self._views(state):
            self.store.put(view + tail, b"")
        self._count(state["function_id"], 1)

    def remove(self, state: dict[str, Any]) -> None:
        tail = _tail(state["queued_at"], state["run_id"])
        for view in self._views(state):
            self.store.delete(view + tail)
        self._count(state["function_id"], -1)

    def move(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        """A run's state changed from ``old`` to ``new``: only the entries that differ are written (a status change
        leaves the entries of the all-runs and the function's views, and the function's count, as they are)."""
        if (old["run_id"] == new["run_id"] and old["queued_at"] == new["queued_at"]
                and old["function_id"] == new["function_id"]):  # what a state change is, nearly always
            if old["status"] != new["status"]:  # only the two status views differ
                tail = _tail(new["queued_at"], new["run_id"])
                before, after = self._views(old), self._views(new)
                self.store.delete(before[2] + tail)
                self.store.delete(before[3] + tail)
                self.store.put(after[2] + tail, b"")
                self.store.put(after[3] + tail, b"")
            return
        old_tail, new_tail = _tail(old["queued_at"], old["run_id"]), _tail(new["queued_at"], new["run_id"])
        was = {view + old_tail for view in self._views(old)}
        now = {view + new_tail for view in self._views(new)}
        for key in was - now:
            self.store.delete(key)
        for key in now - was:
            self.store.put(key, b"")
        if old["function_id"] != new["function_id"]:
            self._count(old["function_id"], -1)
            self._count(new["function_id"], 1)

    def _count(self, function_id: str, delta: int) -> None:
        key = _FUNCTION + function_id.encode()
        raw = self.store.get(key)
        n = (int.from_bytes(raw, "big") if raw else 0) + delta
        if n > 0:
            self.store.put(key, n.to_bytes(8, "big"))
        else:
            self.store.delete(key)

    @property
    def functions(self) -> dict[str, int]:
        """function id -> its runs."""
        return {k[1:].decode(): int.from_bytes(v, "big") for k, v in self.store.scan(_FUNCTION, _FUNCTION + b"\xff")}

    def page(self, function_id: str | None, status: str | None, *, limit: int, cursor: Entry | None = None,
             since_ms: int | None = None, until_ms: int | None = None) -> tuple[list[str], Entry | None]:
        """Run ids, newest first, after ``cursor`` (the last entry of the previous page), queued in
        [since, until); and the cursor of the next page (None at the end)."""
        view = _view(function_id, status)
        start = (-(until_ms - 1), "") if until_ms is not None else (-(1 << 62), "")
        low = _entry_key(view, start)
        if cursor is not None and cursor > start:
            low = _entry_key(view, cursor) + b"\x00"  # strictly after the cursor
        elif cursor is not None:
            low = max(low, _entry_key(view, cursor) + b"\x00")
        out: list[Entry] = []
        for key, _ in self.store.scan(low, view[:-1] + b"\x01"):
            entry = (int.from_bytes(key[len(view):len(view) + 8], "big") - _TOP, key[len(view) + 8:].decode())
            if since_ms is not None and -entry[0] < since_ms:
                break
            out.append(entry)
            if len(out) > limit:
                break
        more = len(out) > limit
        out = out[:limit]
        return [e[1] for e in out], (out[-1] if more and out else None)
