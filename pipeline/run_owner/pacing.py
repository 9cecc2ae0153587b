"""Throttle arithmetic (pure, no Kafka): when may the next run of a throttle key start, and what a start uses.

Two rules, over the starts of one key (each start is one token):

* **GCRA**, as Inngest documents it: a bucket of ``limit + burst`` starts, refilled at ``limit`` per ``period``,
  so ``limit + burst`` start at once from rest, then one every ``emission = period / limit`` ms. The state is one
  number, the theoretical arrival time ``tat``: a start at ``now`` is allowed when
  ``max(tat, now) + emission - (limit + burst) * emission <= now``, and moves ``tat`` to ``max(tat, now) + emission``.
* **strict** (this runtime's addition): at most ``limit`` starts in any rolling ``period``. The state is the
  times of the last ``limit`` starts: the next start is allowed ``period`` after the oldest of them.

Times are ms. A throttle key's state is a small dict ``{"tat": float, "starts": [int, ...], "idle_at": int}`` (JSON
in the owner's ``throttles`` store); nothing else is needed, so a restored owner decides as the old one would have.
From ``idle_at`` on (GCRA: the ``tat``; strict: ``period`` after the last start) the state limits nothing, and a
key without state decides the same: so an idle key's record is removed (:mod:`.throttle`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Pace:
    """The throttle of one function: ``limit`` starts per ``period_ms``, ``burst``, and the rule."""

    limit: int
    period_ms: int
    burst: int = 1
    strict: bool = False

    @property
    def emission(self) -> float:
        return self.period_ms / self.limit

    def allowed_at(self, state: dict[str, Any] | None, now: int) -> int:
        """The earliest time (ms, >= now) a start is allowed, given the key's state (None: never started)."""
        if not state:
            return now
        if self.strict:
            starts = state.get("starts") or []
            if len(starts) < self.limit:
                return now
            return max(now, int(starts[-self.limit]) + self.period_ms)
        tat = float(state.get("tat") or 0)
        allow = max(tat, now) + self.emission - (self.limit + self.burst) * self.emission
        return max(now, math.ceil(allow))

    def started(self, state: dict[str, Any] | None, now: int) -> dict[str, Any]:
        """The key's state after a start at ``now`` (call only when :meth:`allowed_at` is <= now)."""
        state = state or {}
        if self.strict:
            starts = [*(state.get("starts") or []), now][-self.limit:]
            return {"tat": 0.0, "starts": starts, "idle_at": now + self.period_ms}
        tat = max(float(state.get("tat") or 0), now) + self.emission
        return {"tat": tat, "starts": [], "idle_at": math.ceil(tat)}

    def idle(self, state: dict[str, Any] | None, now: int) -> bool:
        """Whether the state no longer limits anything: from its ``idle_at`` on, the key decides exactly as a key
        never started does (its record may be removed)."""
        return not state or int(state["idle_at"]) <= now
