"""glibc malloc's arenas in the worker (WORKER_MALLOC_ARENAS).

glibc gives threads that contend for malloc arenas of their own, up to 8 per core, and an
arena's freed memory is reused by that arena only. The worker's ~50 threads (librdkafka's per
client and per broker, RocksDB's, Faust's, asyncio's executor) spread the same traffic over
many arenas, each keeping its own free memory resident: RSS grows with each new peak in any
thread, e.g. a rebalance's recovery or a backlog read ahead (docs/soak.md). Fewer arenas
trade a little contention for that memory.
"""

from __future__ import annotations

import ctypes

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
