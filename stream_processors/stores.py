"""How the worker's tables are stored on disk (`DEDUPE_STORE=rocksdb://`, the default).

There is one RocksDB database per table per partition (12 on the local stack, more while a
worker also keeps standby copies of another worker's partitions). Faust sizes each database on
its own, for a dedicated host: a 2 GiB block cache and three 64 MiB memtables per database,
and the index and filter blocks of every table file held outside any cache, growing with the
data on disk (the dedupe table's entries are never deleted from its local store: no TTL, below).

Here every database of the process shares ONE block cache (WORKER_ROCKSDB_CACHE_MB) that also
holds the index and filter blocks, and ONE write-buffer manager (WORKER_ROCKSDB_MEMTABLES_MB)
whose memtables are charged to that cache: RocksDB flushes the largest memtable when the total
reaches it. So the tables' memory is about the cache's size, whatever the number of partitions
or the size of the data. Reads that miss the cache go to the OS page cache, which the kernel
may take back. docs/operations/soak.md measures it.

A memory store ignores all this. Either store expands the dedupe table's packed changelog
records into their entries (changelog_packs.py) wherever Faust applies a changelog: standby
copies and recovery.
"""

from __future__ import annotations

from functools import cache

import rocksdict
from rocksdict import WriteBatch
from faust import stores as faust_stores
from faust.stores import memory as faust_memory
from faust.stores import rocksdb as faust_rocksdb

from openmonetize.settings import Settings
from stream_processors.changelog_packs import expanded

MIB = 1024 * 1024
ARENA_BLOCK = 256 * 1024
SCHEME = "openmonetize-rocksdb"  # what `rocksdb://` means in the worker (store_url)
MEMORY_SCHEME = "openmonetize-memory"  # and `memory://`
_sizes = {"cache_mb": 64, "memtables_mb": 32}  # the settings' defaults, until store_url is called


def store_url(settings: Settings) -> str:
    """The Faust store URL for DEDUPE_STORE (`rocksdb://` is served by this module's Store),
    and the sizes of the memory its databases share in this process."""
    faust_stores.STORES.aliases.setdefault(SCHEME, f"{__name__}:Store")
    faust_stores.STORES.aliases.setdefault(MEMORY_SCHEME, f"{__name__}:MemoryStore")
    _sizes.update(cache_mb=settings.worker_rocksdb_cache_mb, memtables_mb=settings.worker_rocksdb_memtables_mb)
    scheme, sep, rest = settings.dedupe_store.partition("://")
    ours = {"rocksdb": SCHEME, "memory": MEMORY_SCHEME}.get(scheme)
    return f"{ours}{sep}{rest}" if ours else settings.dedupe_store


def table_options() -> dict:
    """RocksDB options of one table.

    No TTL, though the dedupe table's entries are useless after its changelog's retention:
    a database opened with rocksdict's TTL lost fresh entries, and Faust's persisted changelog
    offset, at the first compaction after it was reopened (values written with the TTL's
    timestamp are read back without it). A restarted worker then trusted a store that had
    dropped dedupe entries, and charged client retries again: 2 double charges in `make chaos`'s
    broker_restart. Reproduced alone in tests/unit/stream_processors/test_stores.py. The local
    store's size on disk therefore grows with the events seen; its memory does not (above)."""
    return {
        # 10 bits a key (~1% false positives) instead of Faust's 3 (~24%): the dedupe table's
        # lookups are mostly misses (new events), and each false positive reads a data block.
        # 2.0-2.6 against 1.5 µs a miss, measured on a million entries; 1.25 bytes a key.
        "bloom_filter_size": 10,
        "write_buffer_size": 8 * MIB,
        "max_write_buffer_number": 2,
        "target_file_size_base": 16 * MIB,
    }


class SharedMemory:
    """The block cache and write-buffer manager every table database of this process uses."""

    def __init__(self, cache_mb: int, memtables_mb: int):
        self.cache = rocksdict.Cache(cache_mb * MIB)
        self.write_buffers = rocksdict.WriteBufferManager.new_write_buffer_manager_with_cache(
            memtables_mb * MIB, False, self.cache)


@cache
def shared_memory(cache_mb: int, memtables_mb: int) -> SharedMemory:
    """One per process (and per sizes: tests may build apps with other settings)."""
    return SharedMemory(cache_mb, memtables_mb)


class SharedMemoryOptions(faust_rocksdb.RocksDBOptions):
    """Faust's rocksdict options, with the process's shared cache and write-buffer manager."""

    def __init__(self, memory: SharedMemory, **kwargs):
        super().__init__(**kwargs)
        self.memory = memory

    def open(self, path, *, read_only: bool = False) -> rocksdict.Rdict:
        """Faust's open, with these options given for the database's column family too.

        rocksdict applies a database's Options to the column families it creates, and no
        others: a database that already existed (every one, after a worker's restart) was
        reopened with RocksDB's defaults, no Bloom filter and an 8 MiB block cache of its own,
        and every table file written after that had no filter either. A dedupe lookup (mostly
        a miss) then read index and data blocks of every file: up to 4.8 µs of CPU a key in
        the worker on a long-lived stack, 1.7 with the filters (docs/operations/performance.md;
        quix-streams #1136 is the same bug). `read_only` is ignored, as Faust ignores it with
        rocksdict."""
        access = rocksdict.AccessType.read_write() if self.ttl is None else rocksdict.AccessType.with_ttl(self.ttl)
        options = self.as_options()
        db = rocksdict.Rdict(str(path), options=options, column_families={"default": options}, access_type=access)
        db.set_read_options(rocksdict.ReadOptions())
        return db

    def as_options(self) -> rocksdict.Options:
        options = rocksdict.Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_max_open_files(self.max_open_files)
        options.set_write_buffer_size(self.write_buffer_size)
        options.set_target_file_size_base(self.target_file_size_base)
        options.set_max_write_buffer_number(self.max_write_buffer_number)
        # A memtable takes memory in blocks of this size (write_buffer_size / 8, 1 MiB, by
        # default): an empty one of each database would otherwise hold 1 MiB of the budget.
        options.set_arena_block_size(ARENA_BLOCK)
        options.set_write_buffer_manager(self.memory.write_buffers)
        blocks = rocksdict.BlockBasedOptions()
        blocks.set_bloom_filter(self.bloom_filter_size, False)  # a full filter per file, not per block
        blocks.set_block_cache(self.memory.cache)
        # Index and filter blocks in the cache, so they are bounded by it; level 0's pinned
        # there, as the newest files are read most.
        blocks.set_cache_index_and_filter_blocks(True)
        blocks.set_pin_l0_filter_and_index_blocks_in_cache(True)
        blocks.set_index_type(rocksdict.BlockBasedIndexType.binary_search())
        options.set_block_based_table_factory(blocks)
        return options


class _ExpandingPacks:
    """A store that applies the dedupe table's packed changelog records as their entries."""

    def apply_changelog_batch(self, batch, to_key, to_value) -> None:
        super().apply_changelog_batch(expanded(batch), to_key, to_value)


class Store(_ExpandingPacks, faust_rocksdb.Store):
    """Faust's RocksDB store, its databases sharing the process's memory budget."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.use_rocksdict:
            raise RuntimeError("the worker's RocksDB store needs rocksdict")
        self.rocksdb_options = SharedMemoryOptions(shared_memory(**_sizes), **self.options, use_rocksdict=True)


class MemoryStore(_ExpandingPacks, faust_memory.Store):
    """Faust's memory store, expanding packed changelog records as the RocksDB store does."""


class PartitionStores:
    """A table's local store read and written a partition at a time, straight through.

    Faust's per-key path (`table.get`, `table[key] = ...`) costs ~10 µs a call: the table's
    dict wrappers, the serializer, a partition picked from the current event (which a batch read
    outside Faust has to fake, faust #497), and, for a `use_partitioner` table such as `wallets`,
    a search of every partition's database for a key not among the last 1,000 used. The agents
    know each record's partition, so they ask that partition's RocksDB database directly, and
    write a batch's entries as one RocksDB write batch. Keys and values are bytes both ways
    (Faust opens rocksdict in raw mode; the tables use the raw serializer), so what is written
    here reads back through Faust and the reverse. A memory store (DEDUPE_STORE=memory://) has
    one dict for all partitions and is used as Faust would.

    The database handle is looked up per batch, not kept: Faust closes a partition's database
    when the partition is revoked."""

    def __init__(self, table):
        self.table = table

    def database(self, partition: int):
        """The partition's RocksDB database, or the whole memory store."""
        store = self.table.data
        open_for = getattr(store, "_db_for_partition", None)
        return open_for(partition) if open_for is not None else store

    def readers(self, partitions) -> dict:
        """partition → its store's `get(key)`, for the partitions of a batch."""
        return {partition: self.database(partition).get for partition in partitions}

    def lookup(self, partition: int, keys: list[bytes]) -> list[bytes | None]:
        """Each key's value in the partition's store (None: absent), in order: one RocksDB
        multi-get for a batch's keys."""
        db = self.database(partition)
        if db is self.table.data:  # a memory store
            return [db.get(key) for key in keys]
        return db.get(keys)

    def write(self, partition: int, entries) -> None:
        """Put (key, value) pairs into the partition's store, as one write on RocksDB."""
        db = self.database(partition)
        if db is self.table.data:  # a memory store
            for key, value in entries:
                db[key] = value
            return
        batch = WriteBatch(raw_mode=True)
        for key, value in entries:
            batch.put(key, value)
        db.write(batch)
