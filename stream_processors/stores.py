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


def table_options(ttl_s: int | None = None) -> dict:
    """RocksDB options of one table. `ttl_s`: entries not written again for that long are dropped
    at compaction (write time, never earlier than the event): the dedupe table's changelog deletes
    them after the same time, and a restarted worker would not recover them anyway."""
    options = {
        "write_buffer_size": 8 * MIB,
        "max_write_buffer_number": 2,
        "target_file_size_base": 16 * MIB,
        "block_cache_size": 16 * MIB,
    }
    if ttl_s is not None:
        options["ttl"] = ttl_s
    return options
