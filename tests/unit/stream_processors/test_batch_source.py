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
    source.consumer.close()


def test_a_revoked_batch_is_not_a_failure_that_exits_the_worker():
    async def revoked(_batch):
        raise PartitionsRevoked("moved")

    with pytest.raises(PartitionsRevoked):  # handed back to the batch source, which abandons the batch
        asyncio.run(handle_or_exit(revoked, [], "wallets"))


@pytest.fixture
def source():
    """A running source (its consumer never reaches a broker, and is closed after the test)."""
    source = _source()
    source._running.set()
    yield source
    source.consumer.close()


def _confirming(source: BatchSource, outcome: str, log: list):
    """`confirm_owner` as a commit round trip answered ("ok" or "refused") at its next turn."""
    async def confirm_owner(offsets):
        log.append("commit sent")
        await asyncio.sleep(0)  # the round trip: the batch's work goes on meanwhile
        log.append("commit answered")
        if outcome == "refused":
            source._running.clear()
            raise PartitionsRevoked("refused")

    source.confirm_owner = confirm_owner


def test_the_owner_commit_overlaps_the_batch_work_and_is_answered_before_the_block_ends(source):
    log = []
    _confirming(source, "ok", log)

    async def batch():
        async with source.confirming_owner({("t", 0): 5}):
            await asyncio.sleep(0)  # the batch's work, with the commit on its way
            log.append("work done")
        log.append("first write")

    asyncio.run(batch())
    assert log == ["commit sent", "work done", "commit answered", "first write"]


@pytest.mark.parametrize("what", ["a refused commit", "a revoke during the work"])
def test_no_write_follows_a_refused_commit_or_a_revoke_begun_during_the_work(source, what):
    log = []
    _confirming(source, "refused" if what == "a refused commit" else "ok", log)

    async def batch():
        async with source.confirming_owner({("t", 0): 5}):
            if what == "a revoke during the work":
                source._running.clear()  # what stop() does first
        log.append("first write")

    with pytest.raises(PartitionsRevoked):
        asyncio.run(batch())
    assert "first write" not in log


def test_a_batch_that_fails_cancels_its_owner_commit(source):
    log = []
    _confirming(source, "ok", log)

    async def batch():
        async with source.confirming_owner({("t", 0): 5}):
            await asyncio.sleep(0)
            raise ValueError("a bug in the step")

    with pytest.raises(ValueError):
        asyncio.run(batch())
    assert log == ["commit sent"]
