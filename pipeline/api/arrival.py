"""One send's events arrive in their list order where it matters: a cancel (or an awaited event) sent after a
trigger in the same ``POST /e`` is received after it.

"Received after the run's trigger" is decided by the broker's receive time (LogAppendTime), and the events of
one send go to different partitions (keyed by id), appended in whatever order the producer's requests reach
them: measured, a cancel sent right after its trigger in one send was stamped 1-16 ms *before* it in a quarter
of 100 sends, and cancelled nothing. So a send is written in phases: each run of consecutive events whose names
a served function cancels on or waits for (signal names), or of other events, is acknowledged before the next
run is produced. A send of triggers alone (or of cancels alone) is one phase, as before; ``[trigger, cancel]``
costs one more broker round trip.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..sdk.app import Registry


def signal_names(registry: Registry | None) -> frozenset[str]:
    """The event names served functions cancel on or wait for."""
    if registry is None:
        return frozenset()
    names: set[str] = set()
    for fn in registry.functions:
        names.update(c.spec.event for c in fn.cancels)
        names.update(w.event for w in fn.waits)
    return frozenset(names)


def phases(names: Sequence[str], signals: frozenset[str]) -> list[range]:
    """Index ranges of the events to write one after the other (runs of signal / non-signal names)."""
    out: list[range] = []
    start = 0
    for i in range(1, len(names)):
        if (names[i] in signals) != (names[i - 1] in signals):
            out.append(range(start, i))
            start = i
    if names:
        out.append(range(start, len(names)))
    return out
