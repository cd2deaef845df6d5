"""Many table entries in one changelog record: how the dedupe table's entries reach its changelog.

The usage agent keeps one dedupe entry per charged event (a 16-byte key, a 12-byte value).
Written as one changelog record each, every other worker read them back one by one through
Faust's per-record path for its standby copy (aiokafka, the conductor, an Event, the recovery
buffers): 90 µs of CPU per event on a stack of two workers, more than the agents' own work
(docs/operations/performance.md). A restart or a takeover recovered them the same way.

So a batch's entries of one partition go as ONE record (`pack`), and the worker's stores
(stores.py) expand it into the very keys and values a record each would have written
(`expanded`): the local store, every lookup and the dedupe rule are unchanged. A changelog
written before packing still reads: a plain record is applied as it is.

A pack's key is PACK_PREFIX and 8 random bytes, the key of no other record: compaction never
drops a pack for a later one (its entries go when the topic's retention deletes them, as
before), and a batch applied again after a crash writes a pack of its own.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

PACK_PREFIX = b"\x00pack\x1f"  # no dedupe key (16 bytes of BLAKE2b) or marker (\x00applied) starts so
FORMAT = 1
KEY_SIZE, VALUE_SIZE = 16, 12  # the dedupe table's (openmonetize/usage_step.py)
MAX_ENTRIES = 16_384  # 448 KiB a record, well under Kafka's default 1 MiB


class PackError(ValueError):
    """A pack that cannot be read: a bug or a foreign writer, never skipped silently."""


def pack(entries: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """(key, value) changelog records holding `entries`: one per MAX_ENTRIES, none for none."""
    header = bytes((FORMAT, KEY_SIZE, VALUE_SIZE))
    body: list[bytes] = []
    records = []
    for key, value in entries:
        if len(key) != KEY_SIZE or len(value) != VALUE_SIZE:
            raise PackError(f"a dedupe entry of {len(key)}+{len(value)} bytes; a pack holds {KEY_SIZE}+{VALUE_SIZE}")
        body += (key, value)
        if len(body) == 2 * MAX_ENTRIES:
            records.append((PACK_PREFIX + os.urandom(8), header + b"".join(body)))
            body = []
    if body:
        records.append((PACK_PREFIX + os.urandom(8), header + b"".join(body)))
    return records


def unpack(value: bytes) -> Iterator[tuple[bytes, bytes]]:
    """The (key, value) entries of a pack's value."""
    if len(value) < 3 or value[0] != FORMAT:
        raise PackError(f"not a pack of format {FORMAT}: {value[:3]!r}")
    key_size, value_size = value[1], value[2]
    width = key_size + value_size
    if width == 0 or (len(value) - 3) % width:
        raise PackError(f"a pack of {len(value) - 3} bytes is not a whole number of {key_size}+{value_size}-byte entries")
    for start in range(3, len(value), width):
        yield value[start:start + key_size], value[start + key_size:start + width]


class _Message(NamedTuple):
    """What Faust's stores read of a changelog record's message."""

    tp: Any
    partition: int
    offset: int
    key: bytes
    value: bytes


class _Event(NamedTuple):
    key: bytes
    value: bytes
    message: _Message


def expanded(batch: Iterable[Any]) -> Iterator[Any]:
    """Faust changelog events, each pack replaced by one event per entry (same partition and
    offset), for a store's `apply_changelog_batch`."""
    for event in batch:
        message = event.message
        key = message.key
        if message.value is None or not key or not key.startswith(PACK_PREFIX):
            yield event
            continue
        tp, partition, offset = message.tp, message.partition, message.offset
        for entry_key, entry_value in unpack(message.value):
            yield _Event(entry_key, entry_value, _Message(tp, partition, offset, entry_key, entry_value))
