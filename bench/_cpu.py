"""CPU seconds used by a process tree, by service, read from /proc (Linux).

Wall-clock rates on a 2-core machine move with whatever else runs; the CPU a job costs each service moves far
less, so the benches report both: CPU per event by service is the figure an optimisation has to lower.
"""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, user + system CPU seconds) of a live process, or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()  # after "pid (comm) "
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICKS


def _label(pid: int) -> str:
    """``pipeline run matcher`` -> ``matcher``; the root (``pipeline dev``: the API in its process) -> ``dev``."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return str(pid)
    words = [w.decode(errors="replace") for w in argv if w]
    if "run" in words and words.index("run") + 1 < len(words):
        return words[words.index("run") + 1]
    if "dev" in words:
        return "dev"
    return Path(words[0]).name if words else str(pid)


def tree_cpu(root: int) -> dict[str, float]:
    """CPU seconds so far of ``root`` and every descendant, summed by label."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            got = _stat(int(entry.name))
            if got is not None:
                parents[int(entry.name)], cpu[int(entry.name)] = got
    members = {root}
    grew = True
    while grew:
        grew = False
        for pid, ppid in parents.items():
            if ppid in members and pid not in members:
                members.add(pid)
                grew = True
    out: dict[str, float] = {}
    for pid in members:
        if pid in cpu:
            label = _label(pid)
            out[label] = out.get(label, 0.0) + cpu[pid]
    return out


def cpu_between(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds each label used between two :func:`tree_cpu` readings (a label absent before counts from 0)."""
    return {label: round(after[label] - before.get(label, 0.0), 3) for label in sorted(after)}
