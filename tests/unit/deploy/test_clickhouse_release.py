"""The ClickHouse the local stack embeds (chdb) and the server the compose file runs are one
release, and the ClickHouse migrations are that release's SQL.

The engine runs in a subprocess: chdb holds one engine per process, bound to one data path.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
COMPOSE = REPO / "deploy" / "docker-compose.yml"

# Each statement parsed by the engine (EXPLAIN AST: EXPLAIN SYNTAX takes no CREATE DATABASE or
# MATERIALIZED VIEW), then every migration applied to a fresh data path, as `stack up` does.
_SCRIPT = """
import json, sys
import chdb
from openmonetize import migrations

conn = chdb.connect(sys.argv[1])
query = lambda sql: conn.query(sql, "TabSeparatedRaw").bytes().decode()
out = {"version": query("SELECT version()").strip(), "parsed": [], "failed": []}
for migration in migrations.load("clickhouse"):
    for statement in migrations._statements(migration.sql.replace("{database}", "om")):
        name = f"{migration.version:04d}_{migration.name}: {statement.splitlines()[0]}"
        try:
            query("EXPLAIN AST " + statement)
            out["parsed"].append(name)
            query(statement)
        except Exception as exc:
            out["failed"].append(f"{name}: {exc}")
out["tables"] = sorted(query("SELECT name FROM system.tables WHERE database = 'om'").split())
out["types"] = dict(line.split("\\t") for line in query(
    "SELECT name, type FROM system.columns WHERE database = 'om' AND table = 'usage_events'").splitlines())
conn.close()
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> dict:
    result = subprocess.run([sys.executable, "-c", _SCRIPT, str(tmp_path_factory.mktemp("chdb") / "data")],
                            cwd=REPO, check=False, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


def _release(version: str) -> str:
    """ClickHouse's release (YY.M) of a version or image tag: 26.9.2.1 -> 26.9."""
    match = re.match(r"(\d+\.\d+)(\.|$)", version)
    assert match, f"not a ClickHouse version: {version!r}"
    return match[1]


def test_compose_runs_the_release_chdb_embeds(engine):
    tags = re.findall(r"image:\s*clickhouse/clickhouse-server:(\S+)", COMPOSE.read_text())
    assert len(tags) == 1, f"{COMPOSE} should name clickhouse/clickhouse-server once, found {tags}"
    assert _release(tags[0]) == _release(engine["version"]), (
        f"{COMPOSE.name} runs ClickHouse {tags[0]}, the local stack's chdb embeds {engine['version']}: "
        "align the image tag with the chdb-core pin in pyproject.toml"
    )


def test_migrations_parse_and_apply_on_that_release(engine):
    assert engine["failed"] == []
    assert len(engine["parsed"]) >= 6  # the database, usage_events, two rollups and their views
    assert engine["tables"] == ["usage_daily", "usage_daily_mv", "usage_events", "usage_hourly", "usage_hourly_mv"]
    # What an old server (Debian's 18.16) lacks, and the reason none is installed locally.
    assert engine["types"]["metadata"] == "Map(String, String)"
    assert engine["types"]["timestamp"] == "DateTime64(6, 'UTC')"
    assert engine["types"]["credits"] == "Decimal(38, 12)"
