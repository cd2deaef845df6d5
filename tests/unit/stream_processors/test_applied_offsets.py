"""Markers must land in their own source partition's changelog partition, or a worker that
owns partition p would recover another partition's marker (or none) with p's wallets."""

from aiokafka.partitioner import DefaultPartitioner

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
