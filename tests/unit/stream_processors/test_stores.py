"""A worker's RocksDB table must hold, after a restart, everything it held before: the store's
recorded changelog offset tells Faust to skip what it already has (stream_processors/stores.py)."""

import os

from faust.stores.rocksdb import RocksDBOptions

from stream_processors.stores import PartitionStores, table_options

OFFSET_KEY = b"__faust\x00offset__"  # where Faust's RocksDB store keeps the persisted changelog offset


def test_a_reopened_and_compacted_table_keeps_every_entry_and_its_changelog_offset(tmp_path):
    options = RocksDBOptions(**table_options(), use_rocksdict=True)
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
            self.dbs[partition] = RocksDBOptions(**table_options(), use_rocksdict=True).open(self.root / f"t-{partition}.db")
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
    for db in store.dbs.values():
        db.close()


def test_partition_stores_use_a_memory_store_as_one_dict():
    data = {}
    stores = PartitionStores(_Table(data))
    stores.write(0, [(b"a", b"1")])
    stores.write(4, [(b"b", b"2")])
    assert data == {b"a": b"1", b"b": b"2"}
    assert stores.readers({4})[4](b"a") == b"1"
