"""The garbage collector's settings for a service process (``pipeline run ...``, ``pipeline dev``).

Why: profiled under the seed job (bench/seed_job.py, py-spy ``--native``), CPython's cyclic collector took
63% of the worker's time holding the interpreter lock, and 9-13% of the run owner's, the API's and the
canceller's. Two causes, both of the default thresholds (700, 10, 10):

* a batch's records, decoded states and futures live for a few thousand allocations, so with a youngest
  generation of 700 they are promoted to the older generations before they die, and the old generation's
  garbage then triggers full collections;
* a full collection walks every object alive, most of them the modules and the app imported at start
  (60,000-180,000 objects per service): 100-230 ms each, with the interpreter lock held, so a cancel that
  arrives meanwhile waits too.

So a service collects once after start-up and freezes what is alive then (:func:`gc.freeze`: the imported
code is never garbage, and the collector no longer walks it), and its youngest generation is collected
every :data:`GEN0_THRESHOLD` allocations. Cycles are still collected, by the same collector: later, not never,
so memory stays bounded. ``PIPELINE_GC_TUNE=0`` keeps CPython's defaults (for an app whose handlers make many
reference cycles, or to compare).
"""

from __future__ import annotations

import gc
import os

GEN0_THRESHOLD = 50_000  # allocations between collections of the youngest generation (CPython's default: 700)
GEN1_THRESHOLD = 20  # youngest-generation collections between collections of the middle one (default: 10)
GEN2_THRESHOLD = 10  # as CPython's (plus its own rule: only when a quarter of the old objects are new)


def tune_for_service() -> None:
    """Collect, freeze what is alive (the imported code, the app), and set the service thresholds."""
    if os.environ.get("PIPELINE_GC_TUNE", "1") == "0":
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(GEN0_THRESHOLD, GEN1_THRESHOLD, GEN2_THRESHOLD)
