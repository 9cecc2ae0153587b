"""Which instance this process is: a default instance id that is unique on its host and stable across restarts.

The instance id names a service's ``transactional.id`` and its static ``group.instance.id``. Both must be
unique among the live processes of one service, or the newer process fences the older one for good. Both
should also come back unchanged when a process is restarted: the same ``transactional.id`` aborts the dead
process's open transaction at once (read_committed consumers would otherwise wait for its timeout), and the
same ``group.instance.id`` takes the old member's partitions back without a rebalance.

So, when ``PIPELINE_INSTANCE_ID`` is not set, a process claims the lowest free *slot* on its host for each
service it runs, with an ``flock`` on a file under ``$PIPELINE_HOME/instances``. The kernel drops the lock
when the process dies, however it dies, so a restarted process gets the slot (and id) that its previous
self had, and a second process of the same service on the same host gets the next one. Slot 0 is the host
name itself (what earlier versions used), slot n is ``host-n``.
"""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from .broker._fetch import pipeline_home
from .config import Settings

MAX_SLOTS = 256
_held: list[IO[bytes]] = []  # open lock files: closing one would release its slot


def slot_id(host: str, slot: int) -> str:
    """The instance id of a slot."""
    return host if slot == 0 else f"{host}-{slot}"


def claim_slot(services: Iterable[str], *, home: Path | None = None, host: str | None = None) -> str:
    """Claim the lowest slot free for every one of ``services`` on this host; held until the process exits."""
    names = sorted(set(services))
    host = host or socket.gethostname()
    folder = (home or pipeline_home()) / "instances"
    folder.mkdir(parents=True, exist_ok=True)
    for slot in range(MAX_SLOTS):
        taken: list[IO[bytes]] = []
        for name in names:
            handle = open(folder / f"{host}.{name}.{slot}.lock", "ab")  # noqa: SIM115 - held until the process exits
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                break
            taken.append(handle)
        if len(taken) == len(names):
            for held in taken:
                held.truncate(0)
                held.write(f"{os.getpid()}\n".encode())
                held.flush()
            _held.extend(taken)
            return slot_id(host, slot)
        for held in taken:
            held.close()  # releases the lock: this slot is busy for another of our services
    raise RuntimeError(f"no free instance slot for {names} on {host} (more than {MAX_SLOTS} processes?)")


def resolve_instance(settings: Settings, services: Iterable[str]) -> Settings:
    """``settings`` with its instance id: the one configured (``PIPELINE_INSTANCE_ID``), else a claimed slot."""
    if os.environ.get("PIPELINE_INSTANCE_ID") or "instance_id" in settings.model_fields_set:
        return settings
    return settings.model_copy(update={"instance_id": claim_slot(services)})
