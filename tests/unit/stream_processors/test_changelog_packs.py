"""Packed dedupe entries (stream_processors/changelog_packs.py): a pack reads back as the very
entries written, through both of the worker's stores, beside plain records of older changelogs."""

import os
from types import SimpleNamespace

import faust
import pytest
from faust.types import TP

from openmonetize.settings import Settings
from stream_processors import changelog_packs
from stream_processors.changelog_packs import PACK_PREFIX, PackError, expanded, pack, unpack
from stream_processors.stores import MemoryStore, PartitionStores, Store, store_url


def entries(n: int) -> list[tuple[bytes, bytes]]:
    return [(os.urandom(16), os.urandom(12)) for _ in range(n)]


def event(tp: TP, offset: int, key: bytes, value: bytes | None):
    """A changelog event as Faust hands it to a store's apply_changelog_batch."""
    return SimpleNamespace(key=key, value=value, message=SimpleNamespace(
        tp=tp, partition=tp.partition, offset=offset, key=key, value=value))


def test_a_pack_holds_its_entries_in_order_and_its_key_is_no_other_records():
    written = entries(2_000)
    [(key, value)] = pack(written)
    assert key.startswith(PACK_PREFIX) and len(key) == len(PACK_PREFIX) + 8
    assert list(unpack(value)) == written
    assert len(value) == 3 + 2_000 * 28
    assert pack(written)[0][0] != key  # a batch applied again writes a pack of its own: compaction keeps both


def test_nothing_to_pack_writes_nothing_and_a_big_batch_is_split(monkeypatch):
    assert pack([]) == []
    monkeypatch.setattr(changelog_packs, "MAX_ENTRIES", 3)
    written = entries(7)
    records = pack(written)
    assert [len(list(unpack(value))) for _, value in records] == [3, 3, 1]
    assert [entry for _, value in records for entry in unpack(value)] == written


@pytest.mark.parametrize("key, value", [(b"k" * 15, b"v" * 12), (b"k" * 16, b"v" * 13), (b"", b"")])
def test_an_entry_of_another_size_is_refused(key, value):
    with pytest.raises(PackError, match="dedupe entry"):
        pack([(key, value)])


@pytest.mark.parametrize("value, reason", [
    (b"", "not a pack"), (b"\x02\x10\x0c" + b"x" * 28, "not a pack"), (b"\x01\x10\x0c" + b"x" * 27, "whole number"),
    (b"\x01\x00\x00", "whole number"),
])
def test_a_damaged_pack_is_an_error_not_a_silent_loss(value, reason):
    with pytest.raises(PackError, match=reason):
        list(unpack(value))


def test_expanded_replaces_a_pack_by_its_entries_and_passes_everything_else_through():
    tp = TP("x-changelog", 2)
    written = entries(3)
    [(pack_key, pack_value)] = pack(written)
    plain, deleted, marker = event(tp, 7, b"k" * 16, b"v" * 12), event(tp, 8, b"gone", None), \
        event(tp, 10, b"\x00applied\x1fusage.events\x1f2", b"\x00" * 8)
    out = list(expanded([plain, deleted, event(tp, 9, pack_key, pack_value), marker]))
    assert out[:2] == [plain, deleted] and out[-1] is marker
    unpacked = out[2:-1]
    assert [(e.key, e.value) for e in unpacked] == written
    assert [(e.message.key, e.message.value) for e in unpacked] == written
    assert {(e.message.tp, e.message.partition, e.message.offset) for e in unpacked} == {(tp, 2, 9)}


@pytest.mark.parametrize("url, store_type", [("rocksdb://", Store), ("memory://", MemoryStore)])
def test_both_stores_recover_packed_and_plain_records_into_the_same_keys(tmp_path, url, store_type):
    """What a standby copy or a recovery does with the dedupe changelog, through Faust's own
    `apply_changelog_batch` (the RocksDB store also records the changelog offset reached)."""
    app = faust.App("packs", broker="kafka://127.0.0.1:1", store=store_url(Settings(dedupe_store=url)),
                    datadir=str(tmp_path))
    table = app.Table("usage-seen", partitions=6, key_type=bytes, value_type=bytes)
    assert type(table.data) is store_type
    tp = TP("packs-usage-seen-changelog", 3)
    old, new = entries(5), entries(40)
    records = old + pack(new) + [(b"\x00applied\x1fusage.events\x1f3", (45).to_bytes(8, "big"))]
    table.data.apply_changelog_batch([event(tp, offset, key, value) for offset, (key, value) in enumerate(records)],
                                     table._to_key, table._to_value)
    read = PartitionStores(table).readers({3})[3]
    assert all(read(key) == value for key, value in old + new)
    assert read(records[5][0]) is None  # the pack itself is not a key of the table
    assert read(b"\x00applied\x1fusage.events\x1f3") == (45).to_bytes(8, "big")
    if store_type is Store:
        assert table.data.persisted_offset(tp) == len(records) - 1
