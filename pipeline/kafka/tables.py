"""Per-partition state of a processor, kept by the loop: one table per assigned partition of an input topic.

A processor declares its tables (:meth:`pipeline.kafka.processor.Processor.partition_tables`); on every
assignment the loop makes a fresh table for each new partition and, if the tables have a changelog, restores
it as Kafka Streams does: it reads the changelog partition of the same number from the start to its end
(read_committed, so what the service wrote with its offsets and nothing aborted), or, for a table rebuilt
from its own input (``upto_committed``), up to the group's committed offset. It sets the restore metrics
(``pipeline_restore_records``, ``pipeline_restore_seconds``) per service and changelog. On revocation the
partitions' tables are dropped. A restore record that cannot be applied goes to the dead-letter topic and the
restore goes on.

:class:`PartitionTables` is a plain ``dict`` of partition -> table, so reading it on the hot path costs what a
dict does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Generic, TypeVar

from confluent_kafka import Consumer, Message, TopicPartition

from . import metrics
from .deadletter import DeadLetterSink
from .restore import restore

T = TypeVar("T")


class PartitionTables(dict[int, T], Generic[T]):
    """Partition -> table, for the assigned partitions of ``topic``.

    ``new`` makes an empty table. ``changelog`` (a compacted topic whose partition p holds partition p's state)
    and ``load`` (apply one changelog record to a table; a tombstone has a None value) restore it;
    ``upto_committed``: the changelog is the input topic itself, replayed up to the group's committed offset."""

    def __init__(self, topic: str, new: Callable[[], T], *, changelog: str | None = None,
                 load: Callable[[T, Message], None] | None = None, upto_committed: bool = False,
                 label: str | None = None) -> None:
        super().__init__()
        if (changelog is None) != (load is None):
            raise ValueError("a changelog needs a load function, and a load function a changelog")
        self.topic = topic
        self.new = new
        self.changelog = changelog
        self.load = load
        self.upto_committed = upto_committed
        self.label = label or f"restore {changelog}"

    def partitions(self, tps: Iterable[TopicPartition]) -> list[int]:
        """The partitions of ``tps`` that are this table's topic."""
        topic = self.topic
        return [tp.partition for tp in tps if tp.topic == topic]

    def create(self, partitions: Iterable[int]) -> None:
        """Fresh, empty tables for ``partitions`` (replacing any)."""
        for p in partitions:
            self[p] = self.new()

    def drop(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            self.pop(p, None)

    def apply(self, msg: Message) -> None:
        """Apply one changelog record to its partition's table (during a restore)."""
        p = msg.partition()
        if p is None or self.load is None:
            raise ValueError("not a changelog record")
        self.load(self[p], msg)


def restore_tables(tables: Sequence[PartitionTables[Any]], assigned: list[TopicPartition], *, servers: str,
                   consumer: Consumer | None, service: str, dead_letter: DeadLetterSink | None) -> None:
    """Fresh tables for the ``assigned`` partitions, restored from their changelogs (see the module).
    ``consumer``: the group's, for ``upto_committed`` tables."""
    for table in tables:
        parts = table.partitions(assigned)
        table.create(parts)
        if table.changelog is None:
            continue
        ends: dict[int, int] | None = None
        if table.upto_committed and parts:
            if consumer is None:
                raise ValueError(f"{table.label}: restoring up to the committed offsets needs the group's consumer")
            committed = consumer.committed([TopicPartition(table.topic, p) for p in parts], timeout=30)
            ends = {tp.partition: max(tp.offset, 0) for tp in committed}
            parts = [p for p in parts if ends.get(p, 0) > 0]
        count, seconds = restore(servers, table.changelog, parts, table.apply, end_offsets=ends, label=table.label,
                                 dead_letter=dead_letter)
        metrics.RESTORE_SECONDS.labels(service, table.changelog).set(seconds)
        metrics.RESTORE_RECORDS.labels(service, table.changelog).set(count)


def drop_tables(tables: Sequence[PartitionTables[Any]], revoked: list[TopicPartition]) -> None:
    """Forget the tables of revoked partitions."""
    for table in tables:
        table.drop(table.partitions(revoked))
