"""Versioned schema migrations for Postgres and ClickHouse, applied by `openmonetize migrate`.

Files are `NNNN_name.sql` beside this module, applied in order, each at most once; the applied
versions are recorded in a `schema_migrations` table in each database. Safe to rerun, and safe
to run from several processes at once (Postgres: an advisory lock; ClickHouse: idempotent DDL).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

HERE = Path(__file__).resolve().parent
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_PG_LOCK_ID = 7_402_113_001  # any constant shared by every migrating process


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def load(kind: str) -> list[Migration]:
    """The migrations of one database kind ("postgres" or "clickhouse"), in version order."""
    found = []
    for path in sorted((HERE / kind).glob("*.sql")):
        match = _FILE.match(path.name)
        if not match:
            raise ValueError(f"migration file {path.name} is not named NNNN_name.sql")
        found.append(Migration(int(match[1]), match[2], path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"duplicate migration versions in {kind}: {versions}")
    return found


def apply_postgres(database_url: str) -> list[str]:
    """Apply pending Postgres migrations, each in its own transaction. Returns what was applied."""
    applied = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_PG_LOCK_ID,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for migration in load("postgres"):
                if migration.version in done:
                    continue
                with conn.transaction():
                    conn.execute(migration.sql)
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (migration.version, migration.name),
                    )
                applied.append(f"{migration.version:04d}_{migration.name}")
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_PG_LOCK_ID,))
    return applied


def apply_clickhouse(client, database: str) -> list[str]:
    """Apply pending ClickHouse migrations with a clickhouse-connect client. Returns what was applied.

    ClickHouse has no transactional DDL, so every statement in a migration must be idempotent
    (IF NOT EXISTS); a migration interrupted halfway is simply run again.
    """
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", database):
        raise ValueError(f"CLICKHOUSE_DATABASE {database!r} is not a plain identifier")
    client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    client.command(
        f"CREATE TABLE IF NOT EXISTS {database}.schema_migrations "
        "(version UInt32, name String, applied_at DateTime64(3) DEFAULT now64(3)) "
        "ENGINE = ReplacingMergeTree ORDER BY version"
    )
    done = {row[0] for row in client.query(f"SELECT version FROM {database}.schema_migrations").result_rows}
    applied = []
    for migration in load("clickhouse"):
        if migration.version in done:
            continue
        for statement in _statements(migration.sql.replace("{database}", database)):
            client.command(statement)
        client.insert(
            f"{database}.schema_migrations",
            [[migration.version, migration.name]],
            column_names=["version", "name"],
        )
        applied.append(f"{migration.version:04d}_{migration.name}")
    return applied


def _statements(text: str) -> list[str]:
    """Split a migration file on `;` at line ends; `--` comment lines are dropped."""
    body = "\n".join(line for line in text.splitlines() if not line.strip().startswith("--"))
    return [part.strip() for part in re.split(r";\s*\n", body + "\n") if part.strip()]
