"""Priority: the order of the runs that wait to go on (for a concurrency slot or a throttle), pure.

``Priority(run="<CEL>")`` gives each run a value in seconds, clamped to ±600 (``Function.priority_s``, evaluated on
the run's event, so a restored owner ranks a run as the old one did). A waiting run with value ``v`` is placed as
if it had started waiting ``v`` seconds earlier: +600 goes ahead of every run that began waiting in the last ten
minutes, a negative value lets later runs by. Equal places keep their order of arrival. A function without
priority ranks nothing: its runs wait first come, first served.
"""

from __future__ import annotations

import json
from typing import Any

from ..sdk.function import Function

Rank = tuple[int, int, str]


def rank(state: dict[str, Any], fn: Function, since: int) -> Rank:
    """A waiting run's place: ``since`` (when it began waiting) minus its priority, then ``since``, then its id."""
    return since - fn.priority_s(json.loads(state["event"])) * 1000, since, state["run_id"]


def slot_rank(state: dict[str, Any], fn: Function) -> Rank | tuple[()]:
    """A run's place in a concurrency queue: by priority from the point it waits at; () without priority."""
    if fn.priority is None:
        return ()
    return rank(state, fn, int(state["ready_at"] or state["queued_at"]))
