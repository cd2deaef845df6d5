"""Real ClickHouse clients against the stack's ClickHouse front, logging in as the reporting user.

ClickHouse's official JDBC driver (what DBeaver and most BI tools use; its jars fetched from Maven
Central by tests/integration/jdbc/pom.xml, as the Kafka jars are) runs as a single-file Java
program; it asks for ClickHouse's compressed blocks (compress=1) by default, and compresses its
requests too (decompress=1) when told to. clickhouse-connect runs with HTTP compression on and off.
Each test reads a table of its own that the writer created in the analytics database.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import uuid
from decimal import Decimal
from pathlib import Path

import clickhouse_connect
import httpx
import pytest

from deploy.clickhouse_http import blocks
from deploy.local_stack.maven import copy_dependencies
from deploy.local_stack.system import ensure_command
from openmonetize import clickhouse_client

JDBC_DIR = Path(__file__).resolve().parent / "jdbc"
JDBC_VERSION = "0.10.0"  # the newest Maven Central serves whole (0.11.x lack a file there)
ROWS = [
    (1, "cus_a", Decimal("1.5"), datetime.datetime(2026, 1, 2, 3, 4, 5, 678000)),
    (2, "cus_b", Decimal("0.000000000001"), datetime.datetime(2026, 1, 2, 3, 4, 6)),
    (3, "cus_ü", Decimal("-12345678901234567890.123456789012"), datetime.datetime(2026, 12, 31, 23, 59, 59, 999000)),
]


@pytest.fixture(scope="module")
def reader(settings):
    return clickhouse_client.credentials(settings, "reader")


@pytest.fixture(scope="module")
def table(settings):
    """`openmonetize.clients_<random>` holding ROWS, written by the writer."""
    name = f"clients_{uuid.uuid4().hex[:12]}"
    writer = clickhouse_client.get_client(settings, "writer", database=settings.clickhouse_database)
    try:
        writer.command(f"CREATE TABLE {name} (id UInt32, customer String, credits Decimal(38, 12), "
                       "at DateTime64(3, 'UTC')) ENGINE = MergeTree ORDER BY id")
        writer.insert(name, ROWS)
        yield name
        writer.command(f"DROP TABLE {name}")
    finally:
        writer.close()


@pytest.fixture(scope="module")
def jdbc_libs(settings) -> Path:
    # Running a .java file compiles it in memory: that needs the JDK's compiler, not just the JRE
    # the Kafka broker needs.
    ensure_command("javac", "openjdk-17-jdk-headless")
    libs = settings.cache_dir / f"clickhouse-jdbc-{JDBC_VERSION}" / "libs"
    return copy_dependencies(JDBC_DIR / "pom.xml", libs, {"clickhouse.jdbc.version": JDBC_VERSION,
                                                          "jdbc.libs": str(libs)},
                             f"clickhouse-jdbc-{JDBC_VERSION}.jar", f"ClickHouse JDBC driver {JDBC_VERSION}")


def _run_java(libs: Path, *args: str, password: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        ["java", "-cp", f"{libs}/*", str(JDBC_DIR / "ClickHouseJdbc.java"), *args],
        check=False, capture_output=True, text=True, timeout=120, env={**os.environ, "JDBC_PASSWORD": password},
    )


def _java(libs: Path, *args: str, password: str = "") -> list[list[str]]:
    """Run ClickHouseJdbc.java; its output lines split at tabs."""
    result = _run_java(libs, *args, password=password)
    assert result.returncode == 0, f"the JDBC program failed:\n{result.stdout}\n{result.stderr[-4000:]}"
    return [line.split("\t") for line in result.stdout.splitlines()]


def _blocks(settings, direction: str) -> float:
    """The front's count of compressed blocks read (request) or written (response)."""
    metrics = httpx.get(f"{clickhouse_client.base_url(settings)}/metrics", timeout=10).text
    prefix = f'openmonetize_clickhouse_http_compressed_blocks_total{{direction="{direction}"}}'
    return sum(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith(prefix))


@pytest.mark.parametrize("options", [
    pytest.param("", id="driver-defaults"),
    # compressed requests too, and the X-ClickHouse-User/Key headers instead of basic auth
    pytest.param("?decompress=true&http_use_basic_auth=false", id="compressed-requests-header-login"),
])
def test_jdbc_driver_reads_rows_as_the_reporting_user(settings, reader, table, jdbc_libs, options):
    url = f"jdbc:clickhouse://127.0.0.1:{settings.clickhouse_port}/{settings.clickhouse_database}{options}"
    written, read = _blocks(settings, "response"), _blocks(settings, "request")

    lines = _java(jdbc_libs, "query", url, reader.user, f"SELECT id, customer, credits, at FROM {table} ORDER BY id",
                  password=reader.password)

    assert lines[0] == ["driver", "ClickHouse JDBC Driver", JDBC_VERSION]
    assert lines[1] == ["columns", "id", "customer", "credits", "at"]
    rows = [(int(i), customer, Decimal(credits), datetime.datetime.fromisoformat(at))
            for _, i, customer, credits, at in lines[2:]]
    assert rows == ROWS
    # From the front's side: the answers went out in compressed blocks (the driver's compress=1),
    # and with decompress=true its requests came in them, checksums checked.
    assert _blocks(settings, "response") > written
    if "decompress=true" in options:
        assert _blocks(settings, "request") > read


@pytest.mark.parametrize(("right_password", "sql", "error"), [
    pytest.param(False, "SELECT * FROM {table}", "AUTHENTICATION_FAILED", id="wrong-password"),  # plain 403
    pytest.param(True, "SELECT * FROM system.processes", "ACCESS_DENIED", id="refused-table"),  # plain 403
    pytest.param(True, "SELECT * FROM {table}_missing", "UNKNOWN_TABLE", id="missing-table"),  # 404 in blocks
])
def test_jdbc_driver_reads_the_fronts_errors(settings, reader, table, jdbc_libs, right_password, sql, error):
    """The driver reads errors with compress=1 on: plain for 401/403, in compressed blocks otherwise."""
    url = f"jdbc:clickhouse://127.0.0.1:{settings.clickhouse_port}/{settings.clickhouse_database}"
    result = _run_java(jdbc_libs, "query", url, reader.user, sql.format(table=table),
                       password=reader.password if right_password else "wrong")
    assert result.returncode != 0
    assert error in result.stderr, result.stderr[-3000:]


def test_cityhash_is_the_jdbc_drivers(jdbc_libs):
    """Our block checksum against the driver's own CityHash128, on lengths across its branches."""
    data = os.urandom(1500)
    inputs = [data[:n] for n in (0, 1, 8, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 1000, 1500)]
    lines = _java(jdbc_libs, "cityhash", *(piece.hex() for piece in inputs))
    assert [line[0] for line in lines] == [blocks.checksum(piece).hex() for piece in inputs]


@pytest.mark.parametrize("compress", [False, True, "lz4", "zstd", "gzip"])
def test_clickhouse_connect_reads_as_the_reporting_user(settings, reader, table, compress):
    """clickhouse-connect's `compress` is HTTP Content-Encoding (enable_http_compression), not blocks."""
    client = clickhouse_connect.get_client(dsn=clickhouse_client.base_url(settings), username=reader.user,
                                           password=reader.password, database=settings.clickhouse_database,
                                           compress=compress)
    try:
        result = client.query(f"SELECT id, customer, credits, at FROM {table} ORDER BY id")
        assert [(i, c, credits, at.replace(tzinfo=None)) for i, c, credits, at in result.result_rows] == ROWS
        assert client.command("SELECT currentDatabase()") == settings.clickhouse_database
        raw = client.raw_query(f"SELECT customer FROM {table} ORDER BY id FORMAT TabSeparated")
        assert raw.decode().splitlines() == [row[1] for row in ROWS]
    finally:
        client.close()
