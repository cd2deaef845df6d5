"""The short form of `make chaos` in the suite: the stack's worker, then its API, killed -9 under
steady load through HTTP ingest, checked as `make chaos` checks every scenario: nothing the API
acknowledged is lost or charged twice, ClickHouse holds one row per charged event, and
reconcile is clean. The other scenarios (Kafka, Postgres, ClickHouse stopped) would stop the
services the rest of the suite uses, so they run in `make chaos` only; the sink fault tests
cover database outages from the sinks' side."""

from __future__ import annotations

import pytest

from deploy.chaos.__main__ import run_scenario
from deploy.chaos.faults import FAULTS
from deploy.local_stack.stack import Stack


@pytest.mark.parametrize("name", ["worker_kill", "api_restart"])
def test_a_kill_9_under_load_loses_and_double_charges_nothing(settings, name):
    fault = next(f for f in FAULTS if f.name == name)
    outcome = run_scenario(Stack(settings, say=lambda line: None), fault, rate=150, warm_s=3, after_s=4,
                           say=lambda line: None)
    assert (outcome.lost, outcome.double_charged, outcome.reconcile_clean) == (0, 0, True), outcome
    assert outcome.accepted == outcome.charged == outcome.clickhouse_rows > 500, outcome
    assert outcome.recovery_s is not None, outcome
