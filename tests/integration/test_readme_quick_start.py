"""The README's quick start works as written: its shell block runs unchanged, top to bottom, and
the balance, the ledger row and the ClickHouse row it prints are the one event's.

It runs in the suite's environment (run-tests.sh exports the test stack's settings and
OM_ENV_FILE), so the block's `make up` is `openmonetize stack up` on the test stack, which is
already running: it checks every service and returns without starting a second stack. The
block waits for the pipeline itself (its `until` loop); the deadline is this test's timeout.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 120


def quick_start_block() -> str:
    """The first ```sh block under the README's `## Quick start` heading."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"^```sh\n(.*?)^```$", section, re.DOTALL | re.MULTILINE)
    assert match, "README.md: no ```sh block under ## Quick start"
    return match.group(1)


def test_the_block_starts_with_make_up_and_shows_balance_ledger_and_clickhouse():
    block = quick_start_block()
    assert block.startswith("make up")
    for shown in ("/credits?user_id=", "/ledger", "usage_events", "/dashboard"):
        assert shown in block


@pytest.mark.skipif(os.environ.get("OM_TEST_BACKEND", "local") != "local",
                    reason="the block's `make up` is the local stack's")
def test_the_readme_quick_start_runs_as_written(settings):
    try:
        done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", quick_start_block()], cwd=ROOT, check=False,
                              capture_output=True, text=True, timeout=DEADLINE_S)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the quick start did not finish within {DEADLINE_S} s; it printed:\n{exc.stdout}\n{exc.stderr}")
    assert done.returncode == 0, f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"

    answers = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    purchase = next(a for a in answers if "command_id" in a)
    accepted = next(a for a in answers if "accepted" in a)
    balance = next(a for a in answers if "grants" in a)
    ledger = next(a for a in answers if "entries" in a)
    rows = [line.split("\t") for line in done.stdout.splitlines() if line.startswith("evt-1\t")]

    assert (purchase["status"], purchase["balance"]) == ("applied", "100")
    assert accepted == {"accepted": 1, "rejected": []}
    assert len(rows) == 1, done.stdout  # the ClickHouse row: event_id, model, credits, usd_cost
    event_id, model, credits, usd_cost = rows[0]
    credits = Decimal(credits)
    assert (event_id, model) == ("evt-1", "gpt-4o") and credits > 0 and Decimal(usd_cost) > 0
    assert Decimal(balance["balance"]) == 100 - credits
    (entry,) = ledger["entries"]
    assert (entry["event_id"], entry["kind"]) == ("evt-1", "usage_debit")
    assert Decimal(entry["amount"]) == -credits and entry["balance_after"] == balance["balance"]

    dashboard = next(line for line in done.stdout.splitlines() if line.startswith("dashboard: "))
    url = dashboard.split()[1]
    assert url == f"{settings.api_url}/dashboard"
    assert httpx.get(url, timeout=10.0, follow_redirects=True).status_code == 200
