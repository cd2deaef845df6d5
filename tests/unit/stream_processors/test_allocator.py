"""glibc malloc tuning of the worker (stream_processors/allocator.py)."""

import threading

from stream_processors import allocator


def test_arenas_are_capped_on_glibc_and_zero_leaves_the_default():
    assert allocator.limit_arenas(2) is True
    assert allocator.limit_arenas(0) is False


def test_trimming_runs_in_a_daemon_thread_unless_off():
    before = {t.name for t in threading.enumerate()}
    allocator.trim_every(0)
    assert {t.name for t in threading.enumerate()} == before
    allocator.trim_every(3600)
    trims = [t for t in threading.enumerate() if t.name == "malloc-trim"]
    assert trims and all(t.daemon for t in trims)
