"""Records consumed ahead of processing, so that urgent ones (cancellations) can jump the backlog.

A partition is a FIFO: a cancel event produced while a burst of events is being ingested sits behind the
whole burst in the matcher, and its cancel command behind the burst's starts in the run owner. A loop
whose processor says which records are urgent (``urgent(msg)``) consumes up to ``limit`` records ahead
into this backlog, processes the urgent ones at once and commits their output in a transaction of its
own (without offsets), then works through the backlog in order, committing offsets as before.

Why this is safe:

* Offsets are still committed only for the in-order prefix, so a crash re-processes every record past
  it, including urgent ones already applied. Their output is idempotent for the processors that use
  this: the matcher's starts, listeners and signals are keyed records and a start of an existing run is
  a no-op; a cancel of an ended run is a no-op. The early commit also carries the output of the batch's
  in-order records processed so far, still without their offsets: replayed, they are no-ops too (the run
  owner's restored state already shows an applied outcome, which makes it stale).
* An urgent record never overtakes an unprocessed record with the same key (the same run for the owner,
  the same event id for the matcher): order per key is kept, only unrelated records are overtaken.
* :meth:`first_offsets` gives the positions the loop has really processed up to, for the watermark
  gate and for the idle-partition position bump, which must not count the backlog as done.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterable
from typing import Any

_Key = tuple[str, int, Any]


class Lookahead:
    """The backlog of one loop: records consumed and not yet taken in order."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.backlog: deque[Any] = deque()
        self._early: set[tuple[str, int, int]] = set()
        self._pending: Counter[_Key] = Counter()
        # per partition, its records in the backlog not processed early: first_offsets stops walking the
        # backlog (up to ten batches) once it has seen each of them, rather than at every commit to its end
        self._in_order: Counter[tuple[str, int]] = Counter()
        self._early_parts: Counter[tuple[str, int]] = Counter()  # per partition, its records in _early

    def __len__(self) -> int:
        return len(self.backlog)

    def room(self) -> int:
        return self.limit - len(self.backlog)

    def add(self, msgs: Iterable[Any], is_urgent: Callable[[Any], bool]) -> list[Any]:
        """Append consumed records in order; return the ones to process now (urgent, with no earlier
        unprocessed record of the same key)."""
        # Plain dict reads and writes: a Counter's ``c[k] += 1`` on a missing key goes through a Python-level
        # __missing__, which at tens of thousands of records a second was most of this bookkeeping.
        now = []
        backlog, pending, in_order = self.backlog, self._pending, self._in_order
        for msg in msgs:
            backlog.append(msg)
            if msg.error() is not None:
                continue
            topic, partition = msg.topic(), msg.partition()
            key = (topic, partition, msg.key())
            n = pending.get(key, 0)
            if n == 0 and _safely(is_urgent, msg):
                self._early.add((topic, partition, msg.offset()))
                part = (topic, partition)
                self._early_parts[part] = self._early_parts.get(part, 0) + 1
                now.append(msg)
            else:
                pending[key] = n + 1
                part = (topic, partition)
                in_order[part] = in_order.get(part, 0) + 1
        return now

    def take(self, n: int) -> tuple[list[Any], set[int]]:
        """Up to ``n`` records in order, and the ``id()`` of those already processed early (the loop only
        counts their offsets)."""
        out: list[Any] = []
        done: set[int] = set()
        backlog, early, pending, in_order = self.backlog, self._early, self._pending, self._in_order
        while backlog and len(out) < n:
            msg = backlog.popleft()
            out.append(msg)
            if msg.error() is not None:
                continue
            topic, partition = msg.topic(), msg.partition()
            if early:  # most batches have no urgent record: skip building their positions
                ident = (topic, partition, msg.offset())
                if ident in early:
                    early.discard(ident)
                    part = (topic, partition)
                    left = self._early_parts.get(part, 0) - 1
                    if left <= 0:
                        self._early_parts.pop(part, None)
                    else:
                        self._early_parts[part] = left
                    done.add(id(msg))
                    continue
            key = (topic, partition, msg.key())
            left = pending.get(key, 0) - 1
            if left <= 0:
                pending.pop(key, None)
            else:
                pending[key] = left
            part = (topic, partition)
            left = in_order.get(part, 0) - 1
            if left <= 0:
                in_order.pop(part, None)
            else:
                in_order[part] = left
        return out, done

    def first_offsets(self, *, unprocessed: bool = False) -> dict[tuple[str, int], int]:
        """Per partition with records in the backlog, the offset of its first one: nothing at or past it may
        be counted as committed. ``unprocessed``: skip records already processed early, which gives the
        offset up to which every record of the partition has been processed."""
        first: dict[tuple[str, int], int] = {}
        early = self._early
        if unprocessed:
            want = len(self._in_order)
        else:  # every partition with a record in the backlog, processed early or not
            want = len(self._in_order.keys() | self._early_parts.keys())
        for msg in self.backlog:
            if len(first) >= want:
                break
            if msg.error() is not None:
                continue
            part = (msg.topic(), msg.partition())
            if part not in first and not (unprocessed and (*part, msg.offset()) in early):
                first[part] = msg.offset()
        return first

    def drop(self, partitions: set[tuple[str, int]]) -> None:
        """Partitions revoked: their records are consumed again by their next owner, from the committed offset."""
        self.backlog = deque(m for m in self.backlog
                             if m.error() is not None or (m.topic(), m.partition()) not in partitions)
        self._early = {e for e in self._early if (e[0], e[1]) not in partitions}
        self._pending = Counter((m.topic(), m.partition(), m.key()) for m in self.backlog
                                if m.error() is None and (m.topic(), m.partition(), m.offset()) not in self._early)
        self._in_order = Counter({part: n for part, n in self._in_order.items() if part not in partitions})
        self._early_parts = Counter((topic, p) for topic, p, _ in self._early)

    def clear(self) -> None:
        """Everything is consumed again from the committed offsets (after an aborted transaction)."""
        self.backlog.clear()
        self._early.clear()
        self._pending.clear()
        self._in_order.clear()
        self._early_parts.clear()


def _safely(is_urgent: Callable[[Any], bool], msg: Any) -> bool:
    """A record the hook cannot read is not urgent: in order, ``process`` dead-letters it with the reason."""
    try:
        return bool(is_urgent(msg))
    except Exception:  # noqa: BLE001 - whatever the hook raises, the record is not urgent
        return False
