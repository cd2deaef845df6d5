"""The soak's pure parts (`make soak`, deploy/chaos/soak.py): /proc parsing, the fault plan, the
pipeline chase and the summary. The soak itself needs a stack of its own and runs for minutes:
it is not part of `make test`."""

from __future__ import annotations

import pytest

from deploy.chaos import rss
from deploy.chaos.marks import Chase, Marks
from deploy.chaos.soak_plan import fault_schedule, parse_duration
from deploy.chaos.soak_summary import passed, rss_summary, slope_per_min

STATUS = "Name:\tpython3.11\nState:\tS (sleeping)\nVmPeak:\t  900000 kB\nVmRSS:\t  153600 kB\nThreads:\t9\n"
ROLLUP = "55d0-7ffe ---p 00000000 00:00 0 [rollup]\nRss:              153600 kB\nPss:               51200 kB\n"


def test_vmrss_and_pss_are_read_in_kb():
    assert rss.vmrss_kb(STATUS) == 153600
    assert rss.vmrss_kb("Name:\tkthreadd\nState:\tS\n") is None  # a kernel thread has no VmRSS
    assert rss.pss_kb(ROLLUP) == 51200


def test_parent_pid_survives_a_command_name_with_spaces_and_parentheses():
    assert rss.parent_pid("4242 (postgres: a (b) c) S 17 4242 4242 0 -1") == 17


def test_descendants_are_the_whole_tree_below_the_root():
    parents = {1: 0, 10: 1, 11: 10, 12: 10, 13: 12, 20: 1, 21: 20}
    assert rss.descendants(10, parents) == {10, 11, 12, 13}
    assert rss.descendants(99, parents) == {99}


def _fake_proc(tmp_path, processes: dict[int, tuple[int, int, int]]):
    """pid → (parent, VmRSS kB, Pss kB) as files under a fake /proc."""
    for pid, (parent, rss_kb, pss) in processes.items():
        d = tmp_path / str(pid)
        d.mkdir()
        (d / "stat").write_text(f"{pid} (x y) S {parent} {pid} {pid}\n")
        (d / "status").write_text(f"Name:\tx\nVmRSS:\t{rss_kb} kB\n")
        (d / "smaps_rollup").write_text(f"Rss: {rss_kb} kB\nPss: {pss} kB\n")
    (tmp_path / "self").mkdir()  # not a process: skipped
    return tmp_path


def test_a_process_is_measured_with_its_children(tmp_path):
    proc = _fake_proc(tmp_path, {100: (1, 102400, 102400), 101: (100, 51200, 10240), 102: (101, 51200, 10240),
                                 200: (1, 10240, 10240)})
    found = rss.sample([("postgres", 100), ("api", 200), ("gone", 300)], proc)
    assert found == {"postgres": (200.0, 120.0), "api": (10.0, 10.0)}


def test_durations():
    assert [parse_duration(t) for t in ("30m", "90s", "90", "1.5h", " 4M ")] == [1800, 90, 90, 5400, 240]
    for bad in ("", "0m", "-3m", "3 days", "m"):
        with pytest.raises(ValueError):
            parse_duration(bad)


KINDS = ["worker_kill", "sink_ledger_kill", "sink_clickhouse_kill", "broker_restart", "postgres_down", "rebalance"]


def test_the_fault_plan_is_the_same_for_the_same_seed():
    plan = fault_schedule(7, 1800, 120, KINDS)
    assert plan == fault_schedule(7, 1800, 120, KINDS)
    assert plan != fault_schedule(8, 1800, 120, KINDS)
    assert [at for at, _ in plan] == [120 * k for k in range(1, 15)]  # every 2 minutes, none at the end


def test_every_kind_of_fault_comes_round_as_often_as_the_others():
    names = [name for _, name in fault_schedule(3, 1800, 120, KINDS)]
    assert sorted(names[:6]) == sorted(KINDS) and sorted(names[6:12]) == sorted(KINDS)
    assert fault_schedule(3, 1800, 0, KINDS) == [] and fault_schedule(3, 100, 120, KINDS) == []


STAGES = [[("w", "in")], [("w", "mid")], [("a", "out1"), ("b", "out2")]]


def marks(at: float, high: dict, committed: dict) -> Marks:
    return Marks(at, {tp: 0 for tp in high}, high, committed)


def test_a_chase_follows_the_records_stage_by_stage():
    chase = Chase(STAGES, created_at=10.0)
    high = {("in", 0): 5, ("in", 1): 3, ("mid", 0): 4, ("out1", 0): 2, ("out2", 0): 2}
    assert not chase.advance(marks(9.0, high, {}))  # read before the chase began: it may miss what to wait for
    assert chase.targets is None
    assert not chase.advance(marks(11.0, high, {("w", "in", 0): 5}))  # partition 1 not there yet
    assert chase.targets == {("w", "in", 0): 5, ("w", "in", 1): 3}
    # the input is through: the next stage's targets come from the same reading
    high2 = {**high, ("in", 0): 9, ("mid", 0): 7}
    assert not chase.advance(marks(12.0, high2, {("w", "in", 0): 5, ("w", "in", 1): 3}))
    assert chase.stage == 1 and chase.targets == {("w", "mid", 0): 7}
    done = {("w", "mid", 0): 7, ("a", "out1", 0): 2, ("b", "out2", 0): 2}
    assert chase.advance(marks(14.5, high2, done))
    assert chase.finished.is_set() and chase.seconds() == 4.5
    assert chase.advance(marks(20.0, {}, {}))  # done stays done


def test_a_group_that_never_committed_stands_at_the_low_watermark():
    m = Marks(0.0, {("in", 0): 4, ("in", 1): 0}, {("in", 0): 10, ("in", 1): 6}, {("g", "in", 1): 2})
    assert m.position("g", "in", 0) == 4 and m.position("g", "in", 1) == 2
    assert m.lag("g", ["in"]) == 6 + 4 and m.lag("g", ["other"]) == 0


def test_memory_summary_and_its_slope():
    flat_after_growth = [[t, 100 + min(t, 300) / 10] for t in range(0, 1201, 60)]
    summary = rss_summary(flat_after_growth, [[0, 41]])
    assert (summary["first"], summary["max"], summary["last"], summary["restarts"]) == (100, 130, 130, 0)
    assert summary["slope_last_half_mb_per_min"] == 0
    assert slope_per_min([[0, 100], [60, 110], [120, 120]]) == 10
    assert slope_per_min([[0, 100], [60, 110]]) is None


def test_the_slope_counts_only_the_process_running_since_its_last_start():
    samples = [[0, 100], [60, 200], [120, 300], [180, 50], [240, 60], [300, 70], [360, 80]]
    summary = rss_summary(samples, [[0, 41], [180, 77]])
    assert summary["restarts"] == 1 and summary["slope_last_half_mb_per_min"] == 10
    assert rss_summary([], [])["max"] is None


def test_the_verdict():
    clean = {"lost": 0, "double_charged": 0, "reconcile_clean": True, "client_errors": []}
    assert passed(clean)
    assert not passed({**clean, "lost": 1}) and not passed({**clean, "double_charged": 2})
    assert not passed({**clean, "reconcile_clean": False}) and not passed({**clean, "client_errors": ["x"]})
