"""Memory management in the worker: glibc malloc's arenas, fewer (WORKER_MALLOC_ARENAS), their
free memory handed back to the kernel every so often (WORKER_MALLOC_TRIM_S); and how often
Python's cycle collector runs (WORKER_GC_THRESHOLD).

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
import gc
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


def collect_cycles_after(allocations: int) -> None:
    """Run the cycle collector's youngest generation after `allocations` more container objects
    are alive than were freed (Python's default: 700; the older generations keep their ratios).

    A batch of 2,000 records holds tens of thousands of dicts, tuples and Decimals alive at once,
    so at 700 the collector ran after every few hundred events, and every tenth and hundredth time
    walked every object of the process (Faust's, the catalog's): 3.0 s of a 21 s backlog drain,
    ~14 µs per event, measured with `gc.callbacks`. Above a batch's own allocations it runs only
    when garbage really builds up. Nearly everything the agents make is freed by reference
    counting; the collector is only for cycles."""
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(max(allocations, 1), older, oldest)
