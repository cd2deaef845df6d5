"""The metrics of the running processes: each stage reports its latency and lag once an event
went through, and every openmonetize_* series they expose is one the source scan knows (the
scan the naming test and the Grafana dashboard test rely on)."""

from __future__ import annotations

import re

import httpx
import psycopg
import pytest

from tests.conftest import eventually
from tests.integration.support import token_event
from tests.integration.test_ledger_sink import buy
from tests.integration.test_pipeline import Stack
from tests.unit.metric_definitions import exported_series


@pytest.fixture
def stack(settings):
    s = Stack(settings)
    yield s
    s.close()


def scrape(port_or_url) -> str:
    url = port_or_url if isinstance(port_or_url, str) else f"http://127.0.0.1:{port_or_url}/metrics"
    return httpx.get(url, timeout=10).text


def count(text: str, name: str, **labels) -> float:
    """The sum of a series' samples whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if match and all(f'{k}="{v}"' in (match.group(1) or "") for k, v in labels.items()):
            total += float(match.group(2))
    return total


def test_an_event_through_the_pipeline_shows_in_every_stage_s_metrics(stack, tenant, settings):
    stack.burn_table(tenant)
    buy(stack, tenant, "100")
    stack.ingest(tenant, [token_event(input_tokens=1000, output_tokens=100)])

    def in_postgres() -> bool:
        with psycopg.connect(settings.database_url) as conn:
            return conn.execute("SELECT count(*) FROM ledger_entries WHERE customer_id = %s AND kind = 'usage_debit'",
                                (tenant.customer_id,)).fetchone()[0] == 1

    eventually(in_postgres, timeout_s=60, what="the debit in the Postgres ledger")
    worker = scrape(settings.worker_web_port)
    assert count(worker, "openmonetize_stage_latency_seconds_count", stage="usage") >= 1
    assert count(worker, "openmonetize_stage_latency_seconds_count", stage="wallet") >= 1
    assert count(worker, "openmonetize_wallet_records_total", kind="debit") >= 1
    # the lag gauge is refreshed every few seconds, for every owned source partition
    eventually(lambda: f'topic="{stack.topics.usage_events.name}"' in scrape(settings.worker_web_port),
               timeout_s=15, what="openmonetize_worker_lag")
    ledger = eventually(lambda: (text := scrape(settings.ledger_sink_metrics_port))
                        and count(text, "openmonetize_stage_latency_seconds_count", stage="sink-ledger") >= 1 and text,
                        what="the ledger sink's stage latency")
    assert f'topic="{stack.topics.ledger_entries.name}"' in ledger  # openmonetize_sink_lag of its partitions


def test_every_series_the_processes_expose_is_known_to_the_source_scan(settings):
    texts = [scrape(f"{settings.api_url}/metrics"), scrape(settings.worker_web_port),
             scrape(settings.ledger_sink_metrics_port), scrape(settings.clickhouse_sink_metrics_port),
             scrape(f"{settings.clickhouse_url}/metrics")]
    exposed = {match for text in texts for match in re.findall(r"^(openmonetize_\w+?)(?:\{| )", text, re.MULTILINE)}
    exposed = {name for name in exposed if not name.endswith("_created")}
    assert exposed and exposed <= exported_series(), sorted(exposed - exported_series())
