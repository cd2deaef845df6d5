"""The replay's forked readers: never forked while another thread runs."""

from __future__ import annotations

import os
import threading

from openmonetize.rebilling import source


def _pid(task, counter):
    return os.getpid()


def _other_thread() -> tuple[threading.Thread, threading.Event]:
    release = threading.Event()
    other = threading.Thread(target=release.wait, daemon=True)
    other.start()
    return other, release


def test_a_thread_still_running_is_seen():
    other, release = _other_thread()
    try:
        assert source._single_threaded(wait_s=0.05) is False
    finally:
        release.set()
        other.join()


def test_with_another_thread_running_the_readers_run_inline_instead_of_forked(monkeypatch):
    monkeypatch.setattr(source, "FORK_WAIT_S", 0.05)
    other, release = _other_thread()
    try:
        assert source.run_parallel([1, 2, 3], _pid, processes=2) == [os.getpid()] * 3
    finally:
        release.set()
        other.join()
