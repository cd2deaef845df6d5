"""The cycle collector's threshold (openmonetize/cycle_collector.py)."""

import gc

from openmonetize.cycle_collector import collect_cycles_after


def test_the_cycle_collector_waits_for_many_allocations_and_keeps_the_older_generations_ratios():
    before = gc.get_threshold()
    try:
        collect_cycles_after(100_000)
        assert gc.get_threshold() == (100_000, before[1], before[2])
    finally:
        gc.set_threshold(*before)
