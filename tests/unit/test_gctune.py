"""A service process's collector settings (in a child interpreter: freezing would change this test process)."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = """
import gc
from pipeline import gctune
alive = len(gc.get_objects())
gctune.tune_for_service()
assert gc.get_threshold() == (gctune.GEN0_THRESHOLD, gctune.GEN1_THRESHOLD, gctune.GEN2_THRESHOLD)
assert gc.get_freeze_count() > alive // 2, (gc.get_freeze_count(), alive)  # the imported code is out of reach
class Cycle:
    pass
a, b = Cycle(), Cycle()
a.other, b.other = b, a
del a, b
assert gc.collect() >= 2  # cycles made after the freeze are still collected
print("ok")
"""


def test_a_service_freezes_its_start_up_and_still_collects_cycles() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_pipeline_gc_tune_0_keeps_cpythons_defaults() -> None:
    script = ("import gc; before = gc.get_threshold(); from pipeline import gctune; gctune.tune_for_service(); "
              "assert gc.get_threshold() == before and gc.get_freeze_count() == 0; print('ok')")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PIPELINE_GC_TUNE": "0"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
