"""deploy/grafana/openmonetize.json: every metric its PromQL reads is one a process exports, and
it covers what an operator looks at (ingest, lag, stage latency, wallets, DLQ, sinks, API)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.unit.metric_definitions import exported_series

DASHBOARD = Path(__file__).resolve().parents[3] / "deploy" / "grafana" / "openmonetize.json"
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or",
                "unless", "inf", "nan"}


def promql_metrics(expr: str) -> set[str]:
    """The metric names an expression selects: identifiers left once strings, label matchers,
    ranges, grouping clauses and function calls are taken out."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*", text):  # not the unit of a 5m
        following = text[match.end():].lstrip()[:1]
        if following != "(" and match.group() not in PROMQL_WORDS:
            names.add(match.group())
    return names


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def queries() -> list[tuple[str, str]]:
    return [(panel["title"], target["expr"]) for panel in dashboard()["panels"] for target in panel.get("targets", [])]


def test_the_parser_finds_metrics_and_nothing_else():
    expr = ('histogram_quantile(0.99, sum by (stage, le) (rate(openmonetize_stage_latency_seconds_bucket'
            '{stage!="x", le=~"1|2"}[$__rate_interval]))) / on (stage) group_left count without (pod) (up offset 5m)')
    assert promql_metrics(expr) == {"openmonetize_stage_latency_seconds_bucket", "up"}


@pytest.mark.parametrize(("title", "expr"), queries())
def test_every_metric_the_dashboard_reads_is_exported(title, expr):
    names = promql_metrics(expr)
    assert names, expr
    assert names <= exported_series(), f"{title}: {sorted(names - exported_series())} is exported by no process"


def test_the_dashboard_covers_ingest_lag_latency_wallets_dlq_sinks_and_the_api():
    used = {name for _, expr in queries() for name in promql_metrics(expr)}
    assert {
        "openmonetize_ingest_events_accepted_total", "openmonetize_ingest_events_rejected_total",
        "openmonetize_worker_lag", "openmonetize_sink_lag", "openmonetize_stage_latency_seconds_bucket",
        "openmonetize_wallet_records_total", "openmonetize_dlq_records_total", "openmonetize_sink_batch_rows_bucket",
        "openmonetize_sink_errors_total", "openmonetize_http_request_seconds_bucket",
    } <= used


def test_panels_query_the_chosen_prometheus_datasource():
    board = dashboard()
    [variable] = [v for v in board["templating"]["list"] if v["type"] == "datasource"]
    assert variable["query"] == "prometheus"
    reference = {"type": "prometheus", "uid": f"${{{variable['name']}}}"}
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert all(p["datasource"] == reference and all(t["datasource"] == reference for t in p["targets"]) for p in panels)
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
