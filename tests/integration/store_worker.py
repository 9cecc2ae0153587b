"""A counting service whose table is a state store, in its own process, so a test can SIGKILL it mid-transaction.

Each input record adds one to its key's count; the new count goes to the changelog topic (same partition) in
the batch's transaction. usage: python -m tests.integration.store_worker BOOTSTRAP SOURCE CHANGELOG GROUP
INSTANCE [KILL_AFTER]; the state directory comes from PIPELINE_STATE_DIR.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from confluent_kafka import Message

from pipeline.config import Settings
from pipeline.kafka.emitter import Emitter
from pipeline.kafka.loop import ServiceLoop
from pipeline.kafka.processor import Processor
from pipeline.kafka.store import Store
from pipeline.kafka.tables import StoredTable, StoredTables


class Counts(StoredTable):
    """key -> count (decimal text), in the store."""

    def get(self, key: bytes) -> int:
        raw = self.store.get(b"c" + key)
        return int(raw) if raw is not None else 0

    def set(self, key: bytes, count: int) -> None:
        self.store.put(b"c" + key, str(count).encode())

    def load(self, msg: Message) -> None:
        key, value = msg.key(), msg.value()
        assert key is not None
        if value is None:
            self.store.delete(b"c" + key)
        else:
            self.store.put(b"c" + key, value)

    def all(self) -> dict[bytes, int]:
        return {k[1:]: int(v) for k, v in self.store.scan(b"c", b"d")}


class Counter(Processor):
    name = "counter"

    def __init__(self, source: str, changelog: str, kill_after: int | None = None) -> None:
        self.source = source
        self.changelog = changelog
        self.kill_after = kill_after
        self.seen = 0
        self.counts: StoredTables[Counts] = StoredTables(source, Counts, changelog=changelog, label="counts")

    def topics(self) -> list[str]:
        return [self.source]

    def partition_tables(self) -> list[StoredTables[Counts]]:
        return [self.counts]

    def process(self, msg: Message, out: Emitter) -> None:
        p, key = msg.partition(), msg.key()
        assert p is not None and key is not None
        table = self.counts[p]
        count = table.get(key) + 1
        table.set(key, count)
        out.send(self.changelog, key, None, str(count).encode(), partition=p)
        self.seen += 1
        if self.kill_after is not None and self.seen >= self.kill_after:
            time.sleep(0.5)  # the transaction's records reach the broker; it never commits
            os.kill(os.getpid(), signal.SIGKILL)


def open_counts(store: Store) -> Counts:
    return Counts(store)


def main() -> None:
    servers, source, changelog, group, instance = sys.argv[1:6]
    kill_after = int(sys.argv[6]) if len(sys.argv) > 6 else None
    settings = Settings(bootstrap_servers=servers, instance_id=instance, batch_size=50, commit_interval_ms=0)
    loop = ServiceLoop(Counter(source, changelog, kill_after), settings, group_id=group)
    loop.install_signal_handlers()
    loop.run()


if __name__ == "__main__":
    main()
