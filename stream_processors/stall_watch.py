"""A batch held for too long says where it is stuck.

A batch normally takes milliseconds. One held for STALL_AFTER_S means the agent waits on
something that does not come (an acknowledgement, a view, a lock, a blocked event loop), and
its partitions stop while the worker looks alive: Faust's heartbeats run in their own thread.
A thread of ours then logs, once per stuck batch, every thread's stack and, if the event loop
still answers, the agent's pending coroutines: enough to see the cause in a log (the fault
tests print such warnings when they fail).
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import traceback

from prometheus_client import Counter

from openmonetize.logs import get_logger

log = get_logger(__name__)

STALL_AFTER_S = 20.0
STALLS = Counter("openmonetize_worker_stalled_batches_total", "Batches an agent held for over STALL_AFTER_S", ["agent"])


class StallWatch:
    def __init__(self, agent: str, after_s: float = STALL_AFTER_S):
        self.agent = agent
        self.after_s = after_s
        self._since: float | None = None
        self._reported = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def holding(self) -> None:
        """A batch is in hand from now (called on the event loop)."""
        if self._thread is None:
            self._loop = asyncio.get_running_loop()
            self._thread = threading.Thread(target=self._watch, name=f"stall-watch-{self.agent}", daemon=True)
            self._thread.start()
        self._since, self._reported = time.monotonic(), False

    def released(self) -> None:
        self._since = None

    def _watch(self) -> None:
        while True:
            time.sleep(1.0)
            since = self._since
            if since is None or self._reported or time.monotonic() - since < self.after_s:
                continue
            self._reported = True
            STALLS.labels(self.agent).inc()
            log.warning("batch held too long; where each thread is", agent=self.agent,
                        held_s=round(time.monotonic() - since, 1), threads=_thread_stacks())
            if self._loop is not None and not self._loop.is_closed():
                self._loop.call_soon_threadsafe(self._log_tasks)

    def _log_tasks(self) -> None:
        stacks = {}
        for task in asyncio.all_tasks(self._loop):
            chain = _await_chain(task.get_coro())
            if any("stream_processors" in line for line in chain):
                stacks[task.get_name()] = chain
        log.warning("batch held too long; the agents' coroutines", agent=self.agent, tasks=stacks)


def _await_chain(coro) -> list[str]:
    """Where a suspended coroutine waits: each `await` down to the future it is parked on
    (Task.get_stack shows only the outermost frame of a suspended coroutine)."""
    chain = []
    while coro is not None and len(chain) < 30:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            chain.append(repr(coro)[:200])  # the future (or finished coroutine) at the bottom
            break
        chain.append(f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return chain


def _thread_stacks() -> dict[str, str]:
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    return {names.get(ident, str(ident)): "".join(traceback.format_stack(frame, limit=12))[-2500:]
            for ident, frame in sys._current_frames().items()}
