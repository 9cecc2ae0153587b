"""Per-partition state of a processor, kept by the loop: one table per assigned partition of an input topic.

A processor declares its tables (:meth:`pipeline.kafka.processor.Processor.partition_tables`); on every
assignment the loop makes a fresh table for each new partition and, if the tables have a changelog, restores
it as Kafka Streams does: it reads the changelog partition of the same number from the start to its end
(read_committed, so what the service wrote with its offsets and nothing aborted), or, for a table rebuilt
from its own input (``upto_committed``), up to the group's committed offset. It sets the restore metrics
(``pipeline_restore_records``, ``pipeline_restore_seconds``) per service and changelog. On revocation the
partitions' tables are dropped. A restore record that cannot be applied goes to the dead-letter topic and the
restore goes on.

:class:`StoredTables` keep each partition's table in an embedded store (:mod:`pipeline.kafka.store`) instead of
memory: on assignment the loop opens the partition's store and reads only the changelog's *tail*, from the offset
stored with the last committed state; after every commit of the loop's transaction it writes each table's
overlay with its new offset (:func:`checkpoint_tables`), and on revocation it closes the store (kept on disk).
The offset is the changelog's own (taken from the producer's delivery reports of the table's changelog records)
or, for an ``upto_committed`` table, the group's committed input offset.

:class:`PartitionTables` is a plain ``dict`` of partition -> table, so reading it on the hot path costs what a
dict does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Generic, TypeVar

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient

from . import metrics
from .client import admin_config
from .deadletter import DeadLetterSink
from .restore import restore
from .store import Store, StoreDir

T = TypeVar("T")

RESTORE_CHECKPOINT_RECORDS = 20_000  # a long restore writes its progress to the store this often (bounded memory)


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


class StoredTable:
    """A partition's table kept in a :class:`~pipeline.kafka.store.Store`. Subclasses give it its API and say how
    a changelog record applies (:meth:`load`); a subclass that caches decoded values in memory drops what it
    must in :meth:`commit` and :meth:`close`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def load(self, msg: Message) -> None:
        """Apply one changelog record (a restore; idempotent: the record may be applied again)."""
        raise NotImplementedError

    def commit(self, offset: int | None) -> None:
        """The loop's transaction committed: write the open writes and ``offset`` (None: the stored one stays)."""
        self.store.commit(offset)

    def abort(self) -> None:
        """The loop's transaction aborted: forget the open writes."""
        self.store.abort()

    def wipe(self) -> None:
        """Forget everything (the stored offset is out of the changelog's range): a full restore follows."""
        self.store.wipe()

    def close(self) -> None:
        """The partition is revoked (or rebuilt): forget uncommitted writes, keep the files."""
        self.store.close()


S = TypeVar("S", bound=StoredTable)


class StoredTables(PartitionTables[S]):
    """Partition -> :class:`StoredTable` of ``topic``'s assigned partitions, each in its own store, restored
    from ``changelog`` from its stored offset (see the module). ``new(store)`` makes a partition's table."""

    def __init__(self, topic: str, new: Callable[[Store], S], *, changelog: str, upto_committed: bool = False,
                 label: str | None = None) -> None:
        super().__init__(topic, _no_table, changelog=changelog, load=_load_stored, upto_committed=upto_committed,
                         label=label)
        self.make = new

    def create(self, partitions: Iterable[int]) -> None:
        raise TypeError("a stored table is opened from its store (restore_tables)")

    def drop(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            table = self.pop(p, None)
            if table is not None:
                table.close()


def _no_table() -> Any:
    raise TypeError("a stored table is opened from its store (restore_tables)")


def _load_stored(table: StoredTable, msg: Message) -> None:
    table.load(msg)


def restore_tables(tables: Sequence[PartitionTables[Any]], assigned: list[TopicPartition], *, servers: str,
                   consumer: Consumer | None, service: str, dead_letter: DeadLetterSink | None,
                   stores: StoreDir | None = None) -> None:
    """Fresh tables for the ``assigned`` partitions, restored from their changelogs (see the module).
    ``consumer``: the group's, for ``upto_committed`` tables; ``stores``: where stored tables live."""
    for table in tables:
        parts = table.partitions(assigned)
        starts: dict[int, int] | None = None
        stored = table if isinstance(table, StoredTables) else None
        if stored is not None:
            if stores is None:
                raise ValueError(f"{table.label}: a stored table needs a state directory")
            starts = _open_stored(stored, parts, stores, _cluster_id(servers))
        else:
            table.create(parts)
        if table.changelog is None:
            continue
        ends: dict[int, int] | None = None
        if table.upto_committed and parts:
            if consumer is None:
                raise ValueError(f"{table.label}: restoring up to the committed offsets needs the group's consumer")
            committed = consumer.committed([TopicPartition(table.topic, p) for p in parts], timeout=30)
            ends = {tp.partition: max(tp.offset, 0) for tp in committed}
            for p in parts:
                if ends.get(p, 0) <= 0 and isinstance(table, StoredTables) and table[p].store.offset:
                    table[p].wipe()  # the group has no committed offset: its store belongs to an older life
            parts = [p for p in parts if ends.get(p, 0) > 0]
        apply = table.apply if stored is None else _checkpointing(stored)
        reached: dict[int, int] = {}
        count, seconds = restore(servers, table.changelog, parts, apply, end_offsets=ends, start_offsets=starts,
                                 out_of_range=None if stored is None else _wiper(stored), reached=reached,
                                 label=table.label, dead_letter=dead_letter)
        if stored is not None:
            for p in parts:  # the store is complete up to where the restore read
                if p in stored and p in reached:
                    stored[p].commit(reached[p])
        metrics.RESTORE_SECONDS.labels(service, table.changelog).set(seconds)
        metrics.RESTORE_RECORDS.labels(service, table.changelog).set(count)


def _cluster_id(servers: str) -> str | None:
    """The cluster the changelogs are on, asked through a client of its own: this runs inside the group
    consumer's rebalance callback, and a metadata request on that consumer there was followed, twice in full
    test runs, by librdkafka aborting the process."""
    admin = AdminClient(admin_config(servers))
    try:
        cluster: str | None = admin.list_topics(timeout=10).cluster_id
    except KafkaException:
        return None
    return cluster


def _open_stored(table: StoredTables[Any], parts: list[int], stores: StoreDir, origin: str | None) -> dict[int, int]:
    """Open the partitions' stores (closing any still open; wiping one filled from another cluster) and return
    the offsets to restore from."""
    starts: dict[int, int] = {}
    assert table.changelog is not None
    for p in parts:
        old = table.pop(p, None)
        if old is not None:
            old.close()
        store = stores.open(table.changelog, p)
        store.check_origin(origin)
        table[p] = table.make(store)
        starts[p] = store.offset or 0
    return starts


def _wiper(table: StoredTables[Any]) -> Callable[[int], None]:
    return lambda p: table[p].wipe()


def _checkpointing(table: StoredTables[Any]) -> Callable[[Message], None]:
    """``table.apply`` that writes what it restored to the store every RESTORE_CHECKPOINT_RECORDS records, with the
    offset after the record: a full restore of a million runs never holds them all in memory."""
    counts: dict[int, int] = {}

    def apply(msg: Message) -> None:
        table.apply(msg)
        p, offset = msg.partition(), msg.offset()
        if p is None or offset is None:
            return
        n = counts[p] = counts.get(p, 0) + 1
        if n % RESTORE_CHECKPOINT_RECORDS == 0:
            table[p].commit(offset + 1)

    return apply


def checkpoint_tables(tables: Sequence[PartitionTables[Any]], changelog_offsets: dict[tuple[str, int], int],
                      committed: dict[tuple[str, int], int]) -> None:
    """The loop's transaction committed: write each stored table's overlay with its offset. ``changelog_offsets``:
    per changelog partition, the offset after the last record delivered there; ``committed``: the input offsets
    this commit wrote (an ``upto_committed`` table checkpoints only a partition whose offset it carried, since
    its state must match that offset exactly)."""
    for table in tables:
        if not isinstance(table, StoredTables):
            continue
        for p, stored in list(table.items()):
            if table.upto_committed:
                offset = committed.get((table.topic, p))
                if offset is not None:
                    stored.commit(offset)
            else:
                stored.commit(changelog_offsets.get((table.changelog or table.topic, p)))


def abort_tables(tables: Sequence[PartitionTables[Any]]) -> None:
    """The loop's transaction aborted: drop each stored table's open writes (the loop then rebuilds)."""
    for table in tables:
        if isinstance(table, StoredTables):
            for stored in table.values():
                stored.abort()


def drop_tables(tables: Sequence[PartitionTables[Any]], revoked: list[TopicPartition]) -> None:
    """Forget the tables of revoked partitions (a stored table's store is closed, its files kept)."""
    for table in tables:
        table.drop(table.partitions(revoked))
