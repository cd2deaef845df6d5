"""A worker's RocksDB table must hold, after a restart, everything it held before: the store's
recorded changelog offset tells Faust to skip what it already has (stream_processors/stores.py)."""

import os

from faust.stores.rocksdb import RocksDBOptions

from stream_processors.stores import table_options

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
