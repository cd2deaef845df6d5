"""The cycle collector's threshold (openmonetize/cycle_collector.py)."""

import gc

from openmonetize.cycle_collector import collect_cycles_after, freeze_long_lived


def test_the_cycle_collector_waits_for_many_allocations_and_keeps_the_older_generations_ratios():
    before = gc.get_threshold()
    try:
        collect_cycles_after(100_000)
        assert gc.get_threshold() == (100_000, before[1], before[2])
    finally:
        gc.set_threshold(*before)


def test_objects_alive_at_the_freeze_are_left_out_of_the_collectors_walks():
    kept = [[] for _ in range(1000)]
    try:
        freeze_long_lived()
        assert gc.get_freeze_count() >= len(kept)
        walked = {id(o) for generation in range(3) for o in gc.get_objects(generation=generation)}
        assert not any(id(k) in walked for k in kept)
    finally:
        gc.unfreeze()
