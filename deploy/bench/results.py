"""bench-results.json at the repository root: every benchmark merges its own keys into it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[2] / "bench-results.json"


def merge_results(values: dict) -> None:
    """Read-modify-write bench-results.json: other benchmarks own the other keys."""
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data.update(values)
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    data["machine"] = {"cores": os.cpu_count(), "ram_gb": round(ram, 1)}
    data["git_commit"] = _head()  # the code the latest figures came from (it was kept from the first run)
    tmp = RESULTS.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(RESULTS)


def _head() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=RESULTS.parent,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
