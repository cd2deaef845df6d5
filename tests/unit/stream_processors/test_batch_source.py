"""A batch whose partitions are being taken away must stop writing, without exiting the worker."""

import asyncio
from types import SimpleNamespace

import pytest

from stream_processors.batch_source import BatchSource, PartitionsRevoked
from stream_processors.outputs import handle_or_exit


def _source() -> BatchSource:
    async def handle(_records):
        return None

    app = SimpleNamespace(conf=SimpleNamespace(id="unit"))
    return BatchSource(app, "wallets", "127.0.0.1:1", {"t"}, handle, batch_size=10)


def test_a_source_owns_its_partitions_only_while_it_runs():
    source = _source()
    with pytest.raises(PartitionsRevoked):
        source.check_owner()  # not started: nothing is owned
    source._running.set()
    source.check_owner()
    source._running.clear()  # what stop() does first, before it waits for the batch in hand
    with pytest.raises(PartitionsRevoked):
        source.check_owner()


def test_a_revoked_batch_is_not_a_failure_that_exits_the_worker():
    async def revoked(_batch):
        raise PartitionsRevoked("moved")

    with pytest.raises(PartitionsRevoked):  # handed back to the batch source, which abandons the batch
        asyncio.run(handle_or_exit(revoked, [], "wallets"))
