"""The API process of the stack: health, readiness of its dependencies, metrics, OpenAPI."""

from __future__ import annotations

import httpx


def test_health_and_ready(settings):
    assert httpx.get(f"{settings.api_url}/health").json() == {"status": "ok"}
    ready = httpx.get(f"{settings.api_url}/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "checks": {"postgres": "ok", "kafka": "ok", "event_schema": "ok", "catalog": "ok",
                                                  "wallet_balances": "ok"}}


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
    assert "openmonetize_usage_events_total" in text
    assert 'openmonetize_build_info{service="worker"' in text


def test_worker_reads_compressed_usage_events(settings):
    """Producers compress (the API zstd, UsageProducer lz4): the Faust worker must read both."""
    from confluent_kafka import Producer

    from schemas.topics import topics
    from tests.conftest import eventually

    def seen() -> float:
        text = httpx.get(f"http://127.0.0.1:{settings.worker_web_port}/metrics").text
        return sum(float(line.split()[1]) for line in text.splitlines()
                   if line.startswith("openmonetize_usage_events_total{"))

    before = seen()
    topic = topics(settings).usage_events.name
    for codec in ("zstd", "lz4", "gzip"):
        producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "compression.type": codec})
        for i in range(10):
            producer.produce(topic, key=b"compression-test", value=b"not avro: counted as a decode_error")
        assert producer.flush(10) == 0
    eventually(lambda: seen() >= before + 30, timeout_s=30, what="the usage agent to count 30 compressed records")
