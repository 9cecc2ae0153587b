"""A large restore gives the heap's freed pages back (pipeline.kafka.restore.release_freed_memory)."""

from __future__ import annotations

import ctypes
import gc
from pathlib import Path

import pytest

from pipeline.kafka.restore import release_freed_memory


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _glibc() -> bool:
    try:
        return hasattr(ctypes.CDLL(None), "malloc_trim")
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/status").exists() or not _glibc(), reason="needs Linux with glibc")
def test_freed_small_objects_are_returned_to_the_system() -> None:
    # what a restore leaves: many heap allocations (larger than CPython's small-object pools), freed, with a few
    # survivors that keep the heap from shrinking on its own
    before = _rss_mib()
    blocks = [bytes(1200) + i.to_bytes(8, "big") for i in range(80_000)]
    keep = blocks[::2000]
    del blocks
    gc.collect()
    held = _rss_mib()
    release_freed_memory()
    after = _rss_mib()
    assert keep and held - before > 50, (before, held, after)  # the heap did keep the freed memory
    assert held - after > 0.8 * (held - before), (before, held, after)
