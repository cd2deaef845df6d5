"""How the worker's tables are stored on disk (`DEDUPE_STORE=rocksdb://`, the default).

Faust's RocksDB defaults are sized for a dedicated host: a 2 GiB block cache and three 64 MiB
write buffers per database, and there is one database per table per partition (12 on the local
stack). Left so, a worker's memory grows with every partition it has read until the host runs
out. These sizes keep a worker at a few hundred MiB; reads that miss the cache go to the OS
page cache, which the kernel may take back.

A memory store ignores these options.
"""

from __future__ import annotations

MIB = 1024 * 1024


def table_options() -> dict:
    """RocksDB options of one table.

    No TTL, though the dedupe table's entries are useless after its changelog's retention:
    a database opened with rocksdict's TTL lost fresh entries, and Faust's persisted changelog
    offset, at the first compaction after it was reopened (values written with the TTL's
    timestamp are read back without it). A restarted worker then trusted a store that had
    dropped dedupe entries, and charged client retries again: 2 double charges in `make chaos`'s
    broker_restart. Reproduced alone in tests/unit/stream_processors/test_stores.py."""
    return {
        "write_buffer_size": 8 * MIB,
        "max_write_buffer_number": 2,
        "target_file_size_base": 16 * MIB,
        "block_cache_size": 16 * MIB,
    }
