"""The worker's RocksDB tables (stream_processors/stores.py): a restarted table holds everything
it held, and all of a process's databases together stay within one memory budget."""

import os
import time

from faust import stores as faust_stores
from faust.stores.rocksdb import Store as FaustRocksDBStore

from openmonetize.settings import Settings
from stream_processors.stores import (
    ARENA_BLOCK, MIB, MemoryStore, PartitionStores, SharedMemory, SharedMemoryOptions, Store, store_url, table_options,
)

OFFSET_KEY = b"__faust\x00offset__"  # where Faust's RocksDB store keeps the persisted changelog offset


def test_a_reopened_and_compacted_table_keeps_every_entry_and_its_changelog_offset(tmp_path):
    options = SharedMemoryOptions(SharedMemory(cache_mb=8, memtables_mb=4), **table_options(), use_rocksdict=True)
    entries = {b"k%d" % i: os.urandom(12) for i in range(20_000)}
    db = options.open(tmp_path / "usage-seen-4.db")
    for key, value in entries.items():
        db.put(key, value)
    db.put(OFFSET_KEY, b"12216")
    db.close()

    db = options.open(tmp_path / "usage-seen-4.db")  # a restart
    db.compact_range(None, None)  # with rocksdict's TTL, this dropped ~40% of fresh entries and the offset
    assert db.get(OFFSET_KEY) == b"12216"
    assert sum(1 for _ in db.keys()) == len(entries) + 1
    assert all(db.get(key) == value for key, value in list(entries.items())[::997])
    db.close()


def test_a_reopened_table_keeps_its_bloom_filter_and_the_shared_cache(tmp_path):
    """rocksdict gave an existing database RocksDB's defaults unless its column family was
    given the options too: no Bloom filter on the files written after a restart, and an 8 MiB
    block cache of its own."""
    options = SharedMemoryOptions(SharedMemory(cache_mb=16, memtables_mb=4), **table_options(), use_rocksdict=True)
    db = options.open(tmp_path / "usage-seen-0.db")
    db.put(b"k1", b"v1")
    db.close()
    db = options.open(tmp_path / "usage-seen-0.db")  # a restart
    db.put(b"k2", b"v2")
    db.flush()  # a table file written after the restart
    properties = dict(part.strip().split("=", 1) for part in
                      db.property_value("rocksdb.aggregated-table-properties").split(";") if "=" in part)
    assert properties["# entries for filter"] == properties["# entries"] == "2"  # both files have a filter
    assert db.property_value("rocksdb.block-cache-capacity") == str(16 * MIB)
    db.close()


def test_many_databases_share_one_cache_and_one_memtable_budget(tmp_path):
    """Twelve databases written as fast as they can be, well past the budget: once RocksDB's
    background flushes have caught up, their memtables hold about the shared 4 MiB (each
    database's own write buffers would hold up to 2 x 8 MiB, 192 MiB for twelve), and the
    cache, which is charged for them and holds the index and filter blocks, about its 8 MiB.
    (Flushes are asynchronous: a burst like this one overshoots while they run.)"""
    memory = SharedMemory(cache_mb=8, memtables_mb=4)
    options = SharedMemoryOptions(memory, **table_options(), use_rocksdict=True)
    dbs = [options.open(tmp_path / f"usage-seen-{p}.db") for p in range(12)]
    for round_ in range(20):
        for p, db in enumerate(dbs):
            for i in range(2_000):
                db.put(b"%d-%d-%d" % (p, round_, i), os.urandom(12))
            db.get(b"%d-0-1" % p)

    def memtables() -> int:
        return sum(db.property_int_value("rocksdb.cur-size-all-mem-tables") for db in dbs)

    deadline = time.monotonic() + 30
    while memtables() > 4 * MIB + 12 * ARENA_BLOCK and time.monotonic() < deadline:
        dbs[0].put(b"nudge", b"")  # the write buffer manager acts on writes
        time.sleep(0.05)
    assert memtables() <= 4 * MIB + 12 * ARENA_BLOCK
    assert memory.cache.get_usage() <= 8 * MIB + 12 * ARENA_BLOCK
    assert all(db.get(b"%d-19-1999" % p) is not None for p, db in enumerate(dbs))
    for db in dbs:
        db.close()


def test_rocksdb_and_memory_urls_get_our_stores_and_others_are_left_alone():
    settings = Settings(dedupe_store="rocksdb://")
    url = store_url(settings)
    assert url != "rocksdb://"
    assert faust_stores.by_url(url) is Store and issubclass(Store, FaustRocksDBStore)
    assert faust_stores.by_url(store_url(Settings(dedupe_store="memory://"))) is MemoryStore
    assert store_url(Settings(dedupe_store="aerospike://h")) == "aerospike://h"


class _Table:
    """What PartitionStores reads of a Faust table: `.data`, its store."""

    def __init__(self, data):
        self.data = data


class _RocksDBStore:
    """Faust's RocksDB store as PartitionStores sees it: one database per partition."""

    def __init__(self, root):
        self.root, self.dbs = root, {}

    def _db_for_partition(self, partition):
        if partition not in self.dbs:
            self.dbs[partition] = SharedMemoryOptions(SharedMemory(8, 4), **table_options(), use_rocksdict=True).open(self.root / f"t-{partition}.db")
        return self.dbs[partition]


def test_partition_stores_write_a_batch_into_its_partitions_database_as_raw_bytes(tmp_path):
    store = _RocksDBStore(tmp_path)
    stores = PartitionStores(_Table(store))
    stores.write(3, [(b"k1", b"v1"), (b"k2", b"\x00\xff")])
    stores.write(5, [(b"k1", b"other")])
    readers = stores.readers({3, 5})
    assert (readers[3](b"k1"), readers[3](b"k2"), readers[3](b"k9")) == (b"v1", b"\x00\xff", None)
    assert readers[5](b"k1") == b"other"
    assert store.dbs[3].get(b"k1") == b"v1"  # what Faust's own reads and recovery see
    assert stores.lookup(3, [b"k2", b"k9", b"k1"]) == [b"\x00\xff", None, b"v1"]  # a batch's keys at once, in order
    assert stores.lookup(5, []) == []
    for db in store.dbs.values():
        db.close()


def test_partition_stores_use_a_memory_store_as_one_dict():
    data = {}
    stores = PartitionStores(_Table(data))
    stores.write(0, [(b"a", b"1")])
    stores.write(4, [(b"b", b"2")])
    assert data == {b"a": b"1", b"b": b"2"}
    assert stores.readers({4})[4](b"a") == b"1"
    assert stores.lookup(4, [b"b", b"zz", b"a"]) == [b"2", None, b"1"]
