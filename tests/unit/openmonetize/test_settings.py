from pathlib import Path

import pytest
from pydantic import ValidationError

from openmonetize.settings import Settings


def make(**env) -> Settings:
    return Settings(_env_file=None, **env)


def test_urls_derive_from_ports():
    s = make(kafka_port=1111, postgres_port=2222, clickhouse_port=3333, api_port=4444)
    assert s.kafka_bootstrap == "127.0.0.1:1111"
    assert s.database_url == "postgresql://openmonetize:openmonetize@127.0.0.1:2222/openmonetize"
    assert s.clickhouse_url == "http://127.0.0.1:3333"
    assert s.api_url == "http://127.0.0.1:4444"


def test_explicit_url_wins_over_port():
    s = make(clickhouse_url="https://ch.example.internal:8443", clickhouse_port=3333)
    assert s.clickhouse_url == "https://ch.example.internal:8443"


def test_defaults_avoid_the_usual_ports():
    s = make()
    assert {s.kafka_port, s.postgres_port, s.clickhouse_port, s.api_port}.isdisjoint({9092, 5432, 8123, 8000, 8080})


def test_environment_variables_are_read(monkeypatch):
    monkeypatch.setenv("TOPIC_USAGE_EVENTS", "acme.usage")
    monkeypatch.setenv("STACK_DIR", "/tmp/somewhere")
    s = make()
    assert s.topic_usage_events == "acme.usage"
    assert s.stack_dir == Path("/tmp/somewhere")


def test_unknown_service_is_refused_with_the_field_named():
    with pytest.raises(ValidationError) as raised:
        make(stack_services="kafka,redis")
    assert "stack_services" in str(raised.value) and "redis" in str(raised.value)


def test_log_format_is_checked():
    with pytest.raises(ValidationError, match="log_format"):
        make(log_format="xml")
