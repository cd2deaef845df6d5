"""Resident memory of the stack's processes, read from /proc, for the soak.

A process is measured with everything it started: the API's uvicorn workers and Postgres's
backends are children of the PID the stack records (Postgres's backends each lead a session of
their own, so the process group would miss them; the tree does not). VmRSS counts a shared page
in every process that maps it, so the Postgres figure includes its shared buffers once per
backend that touched them (up to shared_buffers each). PSS (/proc/<pid>/smaps_rollup) shares
such a page out between the processes mapping it, so a tree's PSS adds up: it is sampled too.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

PROC = Path("/proc")


def vmrss_kb(status: str) -> int | None:
    """VmRSS in kB from the text of /proc/<pid>/status (None: a kernel thread or a zombie has none)."""
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


def pss_kb(smaps_rollup: str) -> int | None:
    """Pss in kB from the text of /proc/<pid>/smaps_rollup."""
    for line in smaps_rollup.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return None


def parent_pid(stat: str) -> int:
    """The parent PID from the text of /proc/<pid>/stat; the command name in parentheses may
    itself hold spaces and parentheses, so the fields are read after the last ')'."""
    return int(stat.rsplit(")", 1)[1].split()[1])


def descendants(root: int, parents: dict[int, int]) -> set[int]:
    """`root` and every process below it, from a child → parent map."""
    children: dict[int, list[int]] = {}
    for child, parent in parents.items():
        children.setdefault(parent, []).append(child)
    found, todo = {root}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None  # the process ended while we looked


def process_parents(proc: Path = PROC) -> dict[int, int]:
    """child → parent of every process running now."""
    parents = {}
    for entry in proc.iterdir():
        if entry.name.isdigit() and (stat := _read(entry / "stat")) is not None:
            parents[int(entry.name)] = parent_pid(stat)
    return parents


def tree_mb(root: int, parents: dict[int, int], proc: Path = PROC) -> tuple[float, float] | None:
    """(VmRSS, PSS) in MB of `root` and its descendants (None: `root` is gone)."""
    rss_kb = pss_total_kb = 0
    seen = False
    for pid in descendants(root, parents):
        status = _read(proc / str(pid) / "status")
        if status is None:
            continue
        seen = seen or pid == root
        rss_kb += vmrss_kb(status) or 0
        pss_total_kb += pss_kb(_read(proc / str(pid) / "smaps_rollup") or "") or 0
    return (round(rss_kb / 1024, 1), round(pss_total_kb / 1024, 1)) if seen else None


def sample(pids: Iterable[tuple[str, int]], proc: Path = PROC) -> dict[str, tuple[float, float]]:
    """name → (VmRSS MB, PSS MB) for each (name, pid) whose process is alive; one scan of /proc."""
    parents = process_parents(proc)
    found = {}
    for name, pid in pids:
        if (mb := tree_mb(pid, parents, proc)) is not None:
            found[name] = mb
    return found
