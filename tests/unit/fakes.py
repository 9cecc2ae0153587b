"""A stand-in for confluent_kafka's Message in unit tests of pure logic (no broker): just what processors,
the loop's backlog and the owner read of a record."""

from __future__ import annotations

import itertools
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.canceller.index import CancelIndex
from pipeline.kafka.store import Store
from pipeline.run_owner.table import RunTable
from pipeline.serde import Serde

_offsets = itertools.count()


@dataclass
class FakeMessage:
    value_: bytes | None = None
    topic_: str = "t"
    partition_: int = 0
    offset_: int = field(default_factory=lambda: next(_offsets))  # distinct unless given
    key_: bytes | None = None
    urgent: bool = False  # what a test's urgent() hook answers for it

    def error(self) -> None:
        return None

    def value(self) -> bytes | None:
        return self.value_

    def topic(self) -> str:
        return self.topic_

    def partition(self) -> int:
        return self.partition_

    def offset(self) -> int:
        return self.offset_

    def key(self) -> bytes | None:
        return self.key_


# every throwaway store of the unit tests lives under one directory, removed when the test process exits
_STORES = tempfile.TemporaryDirectory(prefix="pipeline-unit-stores-")


def store_dir(prefix: str) -> Path:
    """A new directory for a throwaway state store."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir=_STORES.name))


def run_table() -> RunTable:
    """A run owner's run table in a throwaway state store (a directory under the system's temp dir)."""
    return RunTable(Store(store_dir("runs-") / "runs-0"), Serde())


def cancel_index(signal_window_ms: int) -> CancelIndex:
    """A canceller's join table in a throwaway state store."""
    return CancelIndex(Store(store_dir("index-") / "index-0"), signal_window_ms)
