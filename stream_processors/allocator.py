"""glibc malloc in the worker: fewer arenas (WORKER_MALLOC_ARENAS), their free memory handed
back to the kernel every so often (WORKER_MALLOC_TRIM_S).

glibc gives threads that contend for malloc arenas of their own, up to 8 per core, and an
arena's freed memory is reused by that arena only. The worker's ~50 threads (librdkafka's per
client and per broker, RocksDB's, Faust's, asyncio's executor) spread the same traffic over
many arenas, each keeping its own free memory resident: RSS grows with each new peak in any
thread, e.g. a rebalance's recovery or a backlog read ahead (docs/operations/soak.md). Fewer arenas
trade a little contention for that memory. And glibc returns an arena's free memory to the
kernel only from the top of its heap: what a peak left free below live blocks stays resident
until `malloc_trim` releases its pages (a few milliseconds for a few hundred MB).
"""

from __future__ import annotations

import ctypes
import threading
import time

M_ARENA_MAX = -8  # glibc's malloc.h


def limit_arenas(arenas: int) -> bool:
    """Cap glibc's arenas at `arenas` (0: glibc's default); before the threads start. False
    where there is no glibc mallopt (another libc)."""
    if arenas <= 0:
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_ARENA_MAX, arenas))


def trim_every(interval_s: float) -> None:
    """Release the arenas' free pages to the kernel every `interval_s` (0: never), in a thread."""
    if interval_s <= 0:
        return
    try:
        malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return

    def loop() -> None:
        while True:
            time.sleep(interval_s)
            malloc_trim(0)

    threading.Thread(target=loop, name="malloc-trim", daemon=True).start()
