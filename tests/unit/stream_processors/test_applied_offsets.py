"""Markers must land in their own source partition's changelog partition, or a worker that
owns partition p would recover another partition's marker (or none) with p's wallets."""

from aiokafka.partitioner import DefaultPartitioner
from faust.types import TP

from stream_processors.applied_offsets import decode, encode, marker_key


def test_each_marker_key_is_placed_in_its_own_partition_by_the_tables_partitioner():
    for partitions in (1, 3, 12):
        for partition in range(partitions):
            key = marker_key("wallet.debits", partition, partitions)
            assert DefaultPartitioner()(key, list(range(partitions)), list(range(partitions))) == partition


def test_marker_keys_cannot_be_wallet_ids_and_differ_per_topic():
    a, b = marker_key("wallet.debits", 0, 3), marker_key("wallet.commands", 0, 3)
    assert a != b and not a.startswith(b"w:")


def test_offsets_round_trip_and_absent_is_none():
    assert decode(encode(0)) == 0 and decode(encode(2**40 + 7)) == 2**40 + 7
    assert decode(None) is None


class _Table:
    """What AppliedOffsets uses of a Faust table: `get` (Faust's search of every partition's
    database), its local store `data`, its changelog."""

    def __init__(self, root):
        from types import SimpleNamespace

        self.data = _PartitionedStore(root)
        self.changelog_topic = SimpleNamespace(get_topic_name=lambda: "wallets-changelog")

    def get(self, key):
        return next((value for db in self.data.dbs.values() if (value := db.get(key)) is not None), None)


class _PartitionedStore:
    """Like Faust's RocksDB store: one RocksDB database per partition."""

    def __init__(self, root):
        self.root, self.dbs, self.persisted = root, {}, {}

    def _db_for_partition(self, partition):
        from stream_processors.stores import SharedMemory, SharedMemoryOptions, table_options

        if partition not in self.dbs:
            options = SharedMemoryOptions(SharedMemory(cache_mb=8, memtables_mb=4), **table_options(), use_rocksdict=True)
            self.dbs[partition] = options.open(self.root / f"wallets-{partition}.db")
        return self.dbs[partition]

    def set_persisted_offset(self, tp, offset):
        self.persisted[tp] = offset


def _applied(root, partitions=3):
    from types import SimpleNamespace

    from stream_processors.applied_offsets import AppliedOffsets

    app = SimpleNamespace(in_recovery=False)
    return AppliedOffsets(app, _Table(root), {"wallet.debits", "wallet.commands"}, partitions, "127.0.0.1:1")


def test_a_batchs_markers_go_to_their_own_partition_then_into_the_local_store_there(tmp_path):
    applied = _applied(tmp_path)
    advanced = {("wallet.debits", 2): 41, ("wallet.commands", 2): 7, ("wallet.debits", 0): 3}
    entries = applied.entries(advanced)
    assert sorted(entries) == [0, 2] and len(entries[2]) == 2
    assert (marker_key("wallet.debits", 2, 3), encode(41)) in entries[2]
    applied.save_local(advanced, {2: 1204, 0: 77})
    assert applied.stored("wallet.debits", 2) == 41 and applied.stored("wallet.commands", 2) == 7
    assert applied.table.data.dbs[0].get(marker_key("wallet.debits", 0, 3)) == encode(3)  # in partition 0's store
    assert applied.table.data.dbs[2].get(marker_key("wallet.debits", 0, 3)) is None
    # The store remembers how far into the changelog it holds, per changelog partition: a
    # RocksDB store recovers from there after a restart.
    assert applied.table.data.persisted == {TP("wallets-changelog", 2): 1204, TP("wallets-changelog", 0): 77}


def test_after_recovery_the_source_starts_at_the_markers_or_else_the_beginning(tmp_path):
    import asyncio
    from types import SimpleNamespace

    from confluent_kafka import OFFSET_BEGINNING

    applied = _applied(tmp_path)
    applied.save_local({("wallet.debits", 0): 40}, {})
    from faust.types import TP as tp
    committed = {tp("wallet.debits", 0): 55, tp("wallet.debits", 1): 12, tp("wallet.commands", 0): None,
                 tp("wallets-changelog", 0): 9}
    started = []

    async def seek_to_committed():
        return committed

    async def start_reading(positions):
        started.append(positions)

    consumer = SimpleNamespace(seek_to_committed=seek_to_committed)
    applied.install(consumer, start_reading)
    assert asyncio.run(consumer.seek_to_committed()) == committed  # what Faust expects back
    # The marker wins over a group offset ahead of it. No marker: the start, never the group's
    # offset, which Faust moved past records it fetched but never applied.
    assert started == [{("wallet.debits", 0): 40, ("wallet.debits", 1): OFFSET_BEGINNING,
                         ("wallet.commands", 0): OFFSET_BEGINNING}]
    assert applied.next == {("wallet.debits", 0): 40}
