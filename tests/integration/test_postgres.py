"""The local Postgres: a real server, our database and role, migrations applied and rerunnable."""

from __future__ import annotations

from decimal import Decimal, localcontext

import psycopg
from psycopg import sql

from openmonetize import migrations
from tests.conftest import unique


def test_numeric_round_trip_is_exact_in_an_own_database(settings):
    name = unique("roundtrip")
    with psycopg.connect(settings.database_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        url = settings.database_url.rsplit("/", 1)[0] + f"/{name}"
        with psycopg.connect(url) as conn:
            conn.execute("CREATE TABLE amounts (id int PRIMARY KEY, credits numeric(38, 12) NOT NULL)")
            values = [Decimal("0.000000000001"), Decimal("12345678901234567890.123456789012"), Decimal("-1.5")]
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO amounts VALUES (%s, %s)", list(enumerate(values)))
            rows = conn.execute("SELECT credits FROM amounts ORDER BY id").fetchall()
            assert [r[0] for r in rows] == values
            with localcontext() as ctx:
                ctx.prec = 60  # Python's default 28 digits would round a numeric(38, 12) sum
                expected = sum(values)
            assert conn.execute("SELECT sum(credits) FROM amounts").fetchone()[0] == expected
    finally:
        with psycopg.connect(settings.database_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_migrations_are_recorded_and_rerunning_applies_nothing(settings):
    expected = [m.version for m in migrations.load("postgres")]
    assert migrations.apply_postgres(settings.database_url) == []
    with psycopg.connect(settings.database_url) as conn:
        recorded = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
        assert recorded == expected
        assert conn.execute("SELECT to_regclass('api_keys')").fetchone()[0] == "api_keys"


def test_server_listens_on_loopback_only(settings):
    with psycopg.connect(settings.database_url) as conn:
        assert conn.execute("SHOW listen_addresses").fetchone()[0] == "127.0.0.1"
        assert int(conn.execute("SHOW port").fetchone()[0]) == settings.postgres_port
