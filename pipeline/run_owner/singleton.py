"""Singleton functions in the run owner: at most one active run per singleton key (pure decisions over the run
table; the owner applies them).

``Singleton(key, mode)`` routes every run of a key to one owner partition (``Function.owner_key``), so this owner
sees every start of the key, in the order of its partition. The active run of a key is read from the run
table's singleton index (``s<key>\\x00<run id>``, :mod:`.table`), which is derived from each run's state
(``singleton_key`` while the run has not ended) and so is rebuilt by every restore: no state of its own.

A start of a key that has an active run (queued, running, sleeping, waiting or retrying: anything not ended):

* ``skip``: the new run is recorded as ``Skipped`` (ended at once, never invoked, no system event);
* ``cancel``: the active run is cancelled (``cancel_reason="singleton"``, ``cancel_source`` = the new run, one
  ``inngest/function.cancelled``) and the new run starts, both in the transaction of the start command. A
  cancel of an ended run is a no-op, so a replayed start never cancels twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..kafka.emitter import Emitter
from ..sdk.function import Function
from . import state as st

if TYPE_CHECKING:
    from .owner import RunOwner

CANCEL_REASON = "singleton"


def on_start(owner: RunOwner, new: dict[str, Any], fn: Function, p: int, out: Emitter, now: int) -> bool:
    """Apply the singleton rule to a run about to start: True if it was skipped (the caller starts nothing)."""
    if fn.singleton is None or not new.get("singleton_key"):
        return False
    table = owner.tables[p]
    active = [s for s in (table.get(run_id) for run_id in table.singleton_runs(new["singleton_key"]))
              if s is not None and not st.is_ended(s) and s["run_id"] != new["run_id"]]
    if not active:
        return False
    if fn.singleton.mode == "skip":
        owner.apply(st.skip(new, active[0]["run_id"], now), fn, p, out, now, advance=False)
        return True
    for old in active:
        owner.apply(st.cancel(old, CANCEL_REASON, new["run_id"], now), fn, p, out, now)
    return False
