"""The state store's pure parts (pipeline.kafka.store): overlay reads and scans, commit with its offset, abort,
wipe, a locked directory, and the tail restore's checkpoints (no broker)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as hs

from pipeline.kafka.store import L0_COMPACTION_TRIGGER, Store, StoreDir, StoreMemory, state_dir

MEMORY = StoreMemory(4 * 1024 * 1024, 4 * 1024 * 1024)


def test_uncommitted_writes_are_read_but_never_stored(tmp_path: Path) -> None:
    store = Store(tmp_path / "s", MEMORY)
    store.put(b"a", b"1")
    store.commit(7)
    store.put(b"b", b"2")
    store.delete(b"a")
    assert store.get(b"a") is None and store.get(b"b") == b"2"
    store.close()  # never committed: the open transaction's writes are gone
    again = Store(tmp_path / "s", MEMORY)
    assert again.offset == 7
    assert again.get(b"a") == b"1" and again.get(b"b") is None
    again.put(b"c", b"3")
    again.abort()
    assert again.get(b"c") is None
    again.close()


def test_commit_without_an_offset_keeps_the_stored_one(tmp_path: Path) -> None:
    store = Store(tmp_path / "s", MEMORY)
    store.commit(3)
    store.put(b"k", b"v")
    store.commit(None)
    store.close()
    again = Store(tmp_path / "s", MEMORY)
    assert (again.offset, again.get(b"k")) == (3, b"v")
    again.wipe()
    assert again.offset is None and again.get(b"k") is None
    again.close()


keys = hs.binary(min_size=1, max_size=3).map(lambda b: b"x" + b)


@settings(max_examples=40, deadline=None)
@given(committed=hs.dictionaries(keys, hs.binary(max_size=2)),
       overlay=hs.dictionaries(keys, hs.none() | hs.binary(max_size=2)))
def test_a_scan_merges_the_overlay_in_key_order(tmp_path_factory: object, committed: dict[bytes, bytes],
                                                overlay: dict[bytes, bytes | None]) -> None:
    path = tmp_path_factory.mktemp("scan")  # type: ignore[attr-defined]
    store = Store(path / "s", MEMORY)
    for k, v in committed.items():
        store.put(k, v)
    store.commit(1)
    store.overlay.update(overlay)
    merged = {**committed, **overlay}
    want = sorted((k, v) for k, v in merged.items() if v is not None)
    assert list(store.scan(b"x", b"y")) == want
    assert list(store.scan(b"x\x80", b"y")) == [kv for kv in want if kv[0] >= b"x\x80"]
    store.close()


def test_two_stores_never_share_a_directory(tmp_path: Path) -> None:
    stores = StoreDir(tmp_path, "pipeline-run-owner", "host-1", MEMORY)
    first = stores.open("runs", 0)
    second = stores.open("runs", 0)  # the first still holds its lock: a directory of its own
    assert first.path != second.path
    assert first.path == tmp_path / "pipeline-run-owner" / "host-1" / "runs-0"
    first.close()
    second.close()


def test_the_state_dir_is_configured_or_per_user(tmp_path: Path, monkeypatch: object) -> None:
    assert state_dir(str(tmp_path)) == tmp_path
    monkeypatch.delenv("PIPELINE_STATE_DIR", raising=False)  # type: ignore[attr-defined]
    monkeypatch.setenv("PIPELINE_HOME", str(tmp_path / "home"))  # type: ignore[attr-defined]
    assert state_dir() == (tmp_path / "home").resolve() / "state"


def test_a_store_filled_from_another_cluster_is_wiped(tmp_path: Path) -> None:
    store = Store(tmp_path / "s", MEMORY)
    store.check_origin("cluster-a")
    store.put(b"k", b"v")
    store.commit(9)
    store.check_origin("cluster-a")
    assert store.offset == 9
    store.check_origin("cluster-b")  # a broker made anew: its offsets mean something else
    assert store.offset is None and store.get(b"k") is None
    store.close()


def test_a_reopened_store_keeps_the_process_options(tmp_path: Path) -> None:
    """rocksdict opens an existing database with the options of its OPTIONS file (a block cache of its own per
    store) unless the default column family's options are given too: the shared cache must hold after a restart."""
    memory = StoreMemory(6 * 1024 * 1024, 4 * 1024 * 1024)
    for _ in range(2):  # created, then reopened
        store = Store(tmp_path / "s", memory)
        assert store.db.property_int_value("rocksdb.block-cache-capacity") == 6 * 1024 * 1024
        store.put(b"k", b"v")
        store.commit(1)
        store.close()


def test_a_large_table_has_its_index_and_filter_in_partitions(tmp_path: Path) -> None:
    """A table's index and filter come in small partitions that fit one shard of the block cache: a single index
    block of a million keys (1.5 MiB) did not, and was read and decompressed again at every lookup."""
    store = Store(tmp_path / "s", MEMORY)
    for i in range(50_000):
        store.put(b"l%08d" % i, b"x" * 40)
    store.commit(1)
    store.db.flush()
    props = store.db.property_value("rocksdb.aggregated-table-properties") or ""
    partitions = {k.strip(): v.strip() for k, _, v in (f.partition("=") for f in props.split(";"))}
    assert int(partitions["# index partitions"]) > 1
    assert all(store.get(b"l%08d" % i) == b"x" * 40 for i in range(0, 50_000, 997))
    store.close()


def test_level_0_compactions_wait_for_the_configured_number_of_files(tmp_path: Path) -> None:
    """Each level-0 compaction of a large table rewrites its whole last level (the canceller's CPU): a store,
    created or reopened, runs with :data:`L0_COMPACTION_TRIGGER`, not RocksDB's default of 4, as the options file
    RocksDB writes at each open records."""
    for _ in range(2):  # created, then reopened
        store = Store(tmp_path / "s", MEMORY)
        store.put(b"k", b"v")
        store.commit(1)
        store.close()
        newest = max((tmp_path / "s").glob("OPTIONS-*"), key=lambda p: int(p.name.split("-")[1]))
        settings = [line.strip() for line in newest.read_text().splitlines()]
        assert f"level0_file_num_compaction_trigger={L0_COMPACTION_TRIGGER}" in settings
        assert L0_COMPACTION_TRIGGER != 4
