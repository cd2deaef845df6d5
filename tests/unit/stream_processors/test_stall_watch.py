"""A batch held too long must be reported, once, with where the agent waits."""

import asyncio
import time

from stream_processors.stall_watch import STALLS, StallWatch, _await_chain


def _count(agent: str) -> float:
    return STALLS.labels(agent)._value.get()


def test_a_batch_held_past_the_limit_is_reported_once():
    watch = StallWatch("unit-stuck", after_s=0.2)
    before = _count("unit-stuck")

    async def stuck() -> None:
        watch.holding()
        deadline = time.monotonic() + 5
        while _count("unit-stuck") == before and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # the batch "waits on something"; the watch thread reports it
        stays_reported_until = time.monotonic() + 1.5  # the watch looks once a second: one report only
        while time.monotonic() < stays_reported_until:
            await asyncio.sleep(0.05)
        watch.released()

    asyncio.run(stuck())
    assert _count("unit-stuck") == before + 1


def test_a_quick_batch_is_not_reported():
    watch = StallWatch("unit-quick", after_s=30)
    before = _count("unit-quick")

    async def quick() -> None:
        watch.holding()
        await asyncio.sleep(0)
        watch.released()

    asyncio.run(quick())
    assert _count("unit-quick") == before


def test_the_await_chain_names_each_coroutine_down_to_the_future():
    async def innermost(future):
        await future

    async def outer(future):
        await innermost(future)

    async def main():
        future = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(outer(future))
        await asyncio.sleep(0)
        chain = _await_chain(task.get_coro())
        task.cancel()
        return chain

    chain = asyncio.run(main())
    assert [line.split()[-1] for line in chain[:2]] == ["outer", "innermost"]
    assert "Future" in chain[-1]
