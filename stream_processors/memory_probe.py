"""Where a worker's memory goes, logged every WORKER_MEMORY_PROBE_S seconds (0, the default: off).

A debugging aid for docs/operations/soak.md's memory runs, not a metric: each `worker_memory` log line
splits the process's resident memory into
- `rss_mb`, `anon_mb` (/proc/self/smaps_rollup): what the kernel counts;
- `python_mb` (tracemalloc's traced total): the Python heap, with `growth` naming the source
  lines whose allocations grew most since the first line; only when the worker was started
  with tracemalloc on (PYTHONTRACEMALLOC=1), which slows it by a third or more;
- `malloc_in_use_mb` and `malloc_free_mb` (glibc's mallinfo2): bytes malloc has handed out, and
  bytes it holds free in its arenas (fragmentation that RSS still counts);
- `threads`, `open_dbs` (the RocksDB databases held open: their LOCK files);
- `rocksdb`: per table, the memtables and table readers (index and filter blocks outside the
  cache) of its open databases, from RocksDB's own properties; `rocksdb_cache_mb` and
  `rocksdb_memtables_mb`: the shared block cache's usage (memtables included) and the
  memtables' (stream_processors/stores.py).
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
import tracemalloc

from openmonetize.logs import get_logger
from stream_processors import stores

log = get_logger(__name__)
MIB = 1024 * 1024
TOP_GROWTH = 8
ROCKSDB_PROPERTIES = {  # per database (a shared cache's usage is logged once, as rocksdb_cache_mb)
    "memtables_mb": "rocksdb.cur-size-all-mem-tables",
    "table_readers_mb": "rocksdb.estimate-table-readers-mem",
}


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def start(app, interval_s: float) -> None:
    """Log a `worker_memory` line every `interval_s`."""
    if interval_s <= 0:
        return
    threading.Thread(target=_loop, args=(app, interval_s), name="memory-probe", daemon=True).start()


def _loop(app, interval_s: float) -> None:
    first = tracemalloc.take_snapshot() if tracemalloc.is_tracing() else None
    started = time.monotonic()
    while True:
        time.sleep(interval_s)
        try:
            log.info("worker_memory", t_s=round(time.monotonic() - started), **sample(app, first))
        except Exception:  # noqa: BLE001 - a probe must never stop the worker
            log.exception("memory probe failed")


def sample(app, first: tracemalloc.Snapshot | None) -> dict:
    rollup = _smaps_rollup()
    return {
        "rss_mb": round(rollup.get("Rss", 0) / 1024, 1),
        "anon_mb": round(rollup.get("Anonymous", 0) / 1024, 1),
        **(_python_heap(first) if first else {}),
        **_mallinfo(),
        "threads": _threads(),
        "open_dbs": _open_dbs(),  # RocksDB databases this process holds open (their LOCK files)
        "rocksdb": {table.name: _rocksdb(table) for table in app.tables.values()},
        **_shared_rocksdb(),
    }


def _python_heap(first: tracemalloc.Snapshot) -> dict:
    growth = tracemalloc.take_snapshot().compare_to(first, "lineno")[:TOP_GROWTH]
    return {
        "python_mb": round(tracemalloc.get_traced_memory()[0] / MIB, 1),
        "growth": [f"{stat.traceback[0].filename.rsplit('/', 2)[-1]}:{stat.traceback[0].lineno} "
                   f"{stat.size_diff / MIB:+.1f}MB {stat.count_diff:+d}" for stat in growth],
    }


def _smaps_rollup() -> dict[str, int]:
    """kB per field of /proc/self/smaps_rollup."""
    fields = {}
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                fields[parts[0].rstrip(":")] = int(parts[1])
    return fields


def _threads() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Threads:"))


def _open_dbs() -> int:
    fds = os.listdir("/proc/self/fd")
    return sum(1 for fd in fds if _readlink(f"/proc/self/fd/{fd}").endswith("/LOCK"))


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:  # closed meanwhile
        return ""


def _shared_rocksdb() -> dict[str, float]:
    """The shared cache and memtables of stream_processors/stores.py, once in use."""
    if not stores.shared_memory.cache_info().currsize:
        return {}
    memory = stores.shared_memory(**stores._sizes)
    return {"rocksdb_cache_mb": round(memory.cache.get_usage() / MIB, 1),
            "rocksdb_memtables_mb": round(memory.write_buffers.get_usage() / MIB, 1)}


def _mallinfo() -> dict[str, float]:
    try:
        info = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):
        return {}
    info.restype = _MallInfo2
    m = info()
    return {"malloc_in_use_mb": round((m.uordblks + m.hblkhd) / MIB, 1), "malloc_free_mb": round(m.fordblks / MIB, 1),
            "malloc_arenas_mb": round(m.arena / MIB, 1)}


def _rocksdb(table) -> dict:
    dbs = getattr(table.data, "_dbs", None)
    if dbs is None:
        return {}
    totals = {"dbs": len(dbs)}
    for name, prop in ROCKSDB_PROPERTIES.items():
        total = 0
        for db in list(dbs.values()):
            try:
                total += db.property_int_value(prop) or 0
            except Exception:  # noqa: BLE001 - a database closed under us
                pass
        totals[name] = round(total / MIB, 1)
    return totals
