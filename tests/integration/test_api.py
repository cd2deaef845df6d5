"""The API process of the stack: health, readiness of its dependencies, metrics, OpenAPI."""

from __future__ import annotations

import httpx


def test_health_and_ready(settings):
    assert httpx.get(f"{settings.api_url}/health").json() == {"status": "ok"}
    ready = httpx.get(f"{settings.api_url}/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "checks": {"postgres": "ok", "kafka": "ok"}}


def test_metrics_count_requests(settings):
    httpx.get(f"{settings.api_url}/health")
    text = httpx.get(f"{settings.api_url}/metrics").text
    assert 'openmonetize_http_requests_total{method="GET",route="/health",status="200"}' in text
    assert 'openmonetize_build_info{service="api"' in text


def test_openapi_lists_operational_routes(settings):
    spec = httpx.get(f"{settings.api_url}/openapi.json").json()
    assert {"/health", "/ready", "/metrics"} <= set(spec["paths"])


def test_worker_exposes_metrics(settings):
    text = httpx.get(f"http://127.0.0.1:{settings.worker_web_port}/metrics").text
    assert "openmonetize_worker_usage_events_seen_total" in text
    assert 'openmonetize_build_info{service="worker"' in text
