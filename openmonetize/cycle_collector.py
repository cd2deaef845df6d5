"""How often Python's cycle collector runs in the processes that handle records in batches (the
stream worker and the sinks): GC_THRESHOLD."""

from __future__ import annotations

import gc


def collect_cycles_after(allocations: int) -> None:
    """Run the cycle collector's youngest generation after `allocations` more container objects
    are alive than were freed (Python's default: 700; the older generations keep their ratios).

    A batch of 2,000 records holds tens of thousands of dicts, tuples and Decimals alive at once,
    so at 700 the collector ran after every few hundred events, and every tenth and hundredth time
    walked every object of the process (Faust's, the catalog's): 3.0 s of a 21 s backlog drain,
    ~14 µs per event, measured with `gc.callbacks`; in the sinks ~2 µs of their 11-13 µs per row.
    Above a batch's own allocations it runs only when garbage really builds up. Nearly everything
    a batch makes is freed by reference counting; the collector is only for cycles."""
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(max(allocations, 1), older, oldest)


def freeze_long_lived() -> None:
    """Move every object alive now out of the collector's reach (gc.freeze): called once a
    process has loaded what it keeps for its lifetime (modules, clients, views).

    The collector's full walks (generation 2) visited all of it every time: in a stream worker
    under steady load, ~5 a minute of 60-110 ms each, during which no batch moved. Frozen
    objects are still freed by reference counting; only a cycle among them stays."""
    gc.collect()
    gc.freeze()
