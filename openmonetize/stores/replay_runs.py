"""The `replay_runs` record of each run (migration 0007) and the one-replay-per-tenant lock."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import orjson
import psycopg
from psycopg.rows import dict_row

from openmonetize.billing.money import ZERO

STATUSES = ("queued", "running", "completed", "failed", "interrupted")
TOTALS = ("events", "duplicates", "conflicts", "uncharged", "unrateable", "adjusted", "charged", "rerated",
          "difference", "rewritten_events")


class ReplayBusy(RuntimeError):
    """Another replay of the tenant holds its lock."""


class RunMismatch(ValueError):
    """`--run-id` names a run with other parameters; the message names the field."""


def new_run_id() -> str:
    return f"rr_{uuid.uuid4().hex[:16]}"


@dataclass
class Run:
    run_id: str
    customer_id: str
    user_ids: list[str]
    range_from: datetime
    range_to: datetime
    burn_table_version: int | None
    mode: str  # dry_run | apply
    rebuild_analytics: bool
    status: str
    requested_by: str
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    commands_from: dict | None = None
    events: int = 0
    duplicates: int = 0
    conflicts: int = 0
    uncharged: int = 0
    unrateable: int = 0
    adjusted: int = 0
    charged: Decimal = ZERO
    rerated: Decimal = ZERO
    difference: Decimal = ZERO
    rewritten_events: int = 0
    per_user: list[dict] = field(default_factory=list)
    elapsed_s: float | None = None
    error: str | None = None


def create(conn: psycopg.Connection, run: Run) -> Run:
    with conn.transaction():
        _insert(conn, run)
    return run


def create_unless_busy(conn: psycopg.Connection, run: Run) -> str | None:
    """Record the run unless one of the tenant is running or was queued in the last minute (its
    id then): what the API checks before it starts a run's process. A queued run older than that
    never started (its process died before taking the lock)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key("queue", run.customer_id),))
        busy = conn.execute(
            "SELECT run_id FROM replay_runs WHERE customer_id = %s AND (status = 'running' OR "
            "(status = 'queued' AND created_at > now() - interval '1 minute')) LIMIT 1", (run.customer_id,)).fetchone()
        if busy is not None:
            return busy[0]
        _insert(conn, run)
    return None


def _insert(conn: psycopg.Connection, run: Run) -> None:
    row = conn.execute(
            "INSERT INTO replay_runs (run_id, customer_id, user_ids, range_from, range_to, burn_table_version, mode, "
            "rebuild_analytics, status, requested_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "RETURNING created_at",
            (run.run_id, run.customer_id, run.user_ids, run.range_from, run.range_to, run.burn_table_version,
             run.mode, run.rebuild_analytics, run.status, run.requested_by)).fetchone()
    run.created_at = row[0]


def get(conn: psycopg.Connection, run_id: str, customer_id: str | None = None) -> Run | None:
    sql, params = "SELECT * FROM replay_runs WHERE run_id = %s", [run_id]
    if customer_id is not None:
        sql += " AND customer_id = %s"
        params.append(customer_id)
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(sql, params).fetchone()
    return Run(**row) if row else None


def listed(conn: psycopg.Connection, customer_id: str | None = None, limit: int = 50) -> list[Run]:
    sql, params = "SELECT * FROM replay_runs", []
    if customer_id is not None:
        sql += " WHERE customer_id = %s"
        params.append(customer_id)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(sql + " ORDER BY created_at DESC, run_id LIMIT %s", [*params, limit]).fetchall()
    return [Run(**row) for row in rows]


def check_same(stored: Run, asked: Run) -> None:
    """A resumed run must ask for what it asked for the first time."""
    for name in ("customer_id", "user_ids", "range_from", "range_to", "burn_table_version", "mode",
                 "rebuild_analytics"):
        if getattr(stored, name) != getattr(asked, name):
            option = {"customer_id": "--customer", "user_ids": "--user", "range_from": "--from", "range_to": "--to",
                      "burn_table_version": "--burn-table-version", "mode": "--dry-run/--yes",
                      "rebuild_analytics": "--rebuild-analytics"}[name]
            raise RunMismatch(f"{option}: run {stored.run_id} was started with {getattr(stored, name)!r}, "
                              f"not {getattr(asked, name)!r}; resume it with the same options or start a new run")


def mark(conn: psycopg.Connection, run_id: str, status: str, error: str | None = None) -> None:
    started = ", started_at = coalesce(started_at, now())" if status == "running" else ""
    finished = ", finished_at = now()" if status in ("completed", "failed", "interrupted") else ""
    with conn.transaction():
        conn.execute(f"UPDATE replay_runs SET status = %s, error = %s{started}{finished} WHERE run_id = %s",
                     (status, error, run_id))


def save_totals(conn: psycopg.Connection, run: Run) -> None:
    with conn.transaction():
        conn.execute(
            f"UPDATE replay_runs SET {', '.join(f'{n} = %s' for n in TOTALS)}, per_user = %s, elapsed_s = %s "
            "WHERE run_id = %s",
            (*(getattr(run, n) for n in TOTALS), orjson.dumps(run.per_user, default=str).decode(), run.elapsed_s,
             run.run_id))


def save_commands_from(conn: psycopg.Connection, run_id: str, offsets: dict[int, int]) -> dict[int, int]:
    """Keep the first offsets recorded for the run; return those in force."""
    with conn.transaction():
        row = conn.execute(
            "UPDATE replay_runs SET commands_from = coalesce(commands_from, %s) WHERE run_id = %s "
            "RETURNING commands_from", (orjson.dumps({str(p): o for p, o in offsets.items()}).decode(), run_id)
        ).fetchone()
    return {int(p): o for p, o in row[0].items()}


def _lock_key(purpose: str, customer_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"replay\x1f{purpose}\x1f{customer_id}".encode(), digest_size=8).digest(),
                          "big", signed=True)


@contextmanager
def tenant_lock(database_url: str, customer_id: str, run_id: str) -> Iterator[None]:
    """Hold the tenant's replay lock (a session advisory lock: a killed run releases it with its
    connection) for the block; ReplayBusy when another run holds it. Runs of the tenant still
    marked running are then known to be dead and are marked interrupted."""
    key = _lock_key("run", customer_id)
    with psycopg.connect(database_url, autocommit=True) as conn:
        if not conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:
            running = conn.execute("SELECT run_id FROM replay_runs WHERE customer_id = %s AND status = 'running' "
                                   "AND run_id <> %s ORDER BY started_at DESC LIMIT 1", (customer_id, run_id)).fetchone()
            which = f" (run {running[0]})" if running else ""
            raise ReplayBusy(f"another replay of tenant {customer_id} is running{which}: one at a time per tenant")
        try:
            conn.execute("UPDATE replay_runs SET status = 'interrupted', finished_at = coalesce(finished_at, now()) "
                         "WHERE customer_id = %s AND status = 'running' AND run_id <> %s", (customer_id, run_id))
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
