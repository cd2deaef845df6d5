"""The stack's ClickHouse service, through clickhouse-connect at CLICKHOUSE_URL, as any client would."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from openmonetize import clickhouse_client, migrations
from tests.conftest import unique


@pytest.fixture
def client(settings):
    client = clickhouse_client.get_client(settings, "writer")
    yield client
    client.close()


def test_round_trip_10k_rows_with_bound_parameters(client):
    db = unique("t")
    client.command(f"CREATE DATABASE {db}")
    try:
        client.command(
            f"CREATE TABLE {db}.usage (tenant LowCardinality(String), user String, tokens UInt32, "
            f"credits Decimal(38, 12), ts DateTime64(6, 'UTC')) ENGINE = MergeTree ORDER BY (tenant, ts)"
        )
        start = datetime(2026, 11, 1, tzinfo=timezone.utc)
        rows = [
            [f"tenant-{i % 3}", f"user-{i % 50}", i, Decimal(i) / Decimal(1000), start + timedelta(seconds=i)]
            for i in range(10_000)
        ]
        client.insert(f"{db}.usage", rows, column_names=["tenant", "user", "tokens", "credits", "ts"])
        result = client.query(
            f"SELECT count(), sum(tokens), sum(credits) FROM {db}.usage WHERE tenant = {{tenant:String}}",
            parameters={"tenant": "tenant-1"},
        ).result_rows[0]
        mine = [r for r in rows if r[0] == "tenant-1"]
        assert result == (len(mine), sum(r[2] for r in mine), sum(r[3] for r in mine))
    finally:
        client.command(f"DROP DATABASE IF EXISTS {db}")


def test_server_error_surfaces_with_its_message(client):
    with pytest.raises(DatabaseError) as raised:
        client.query("SELECT * FROM no_such_database.no_such_table")
    assert "no_such_database" in str(raised.value)


def test_clickhouse_migrations_applied_and_rerunnable(client, settings):
    assert migrations.apply_clickhouse(client, settings.clickhouse_database) == []
    recorded = client.query(
        f"SELECT version FROM {settings.clickhouse_database}.schema_migrations FINAL ORDER BY version"
    ).result_columns[0]
    assert list(recorded) == [m.version for m in migrations.load("clickhouse")]
