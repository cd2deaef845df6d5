"""Plans and subscriptions in Postgres (migration 0008), and what the scheduler records.

Every function takes the caller's tenant and never reads another's rows. Writes return the
catalog record to publish (billing.catalog), so entitlement checks gate features from memory.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import psycopg
from psycopg.rows import dict_row

from openmonetize import wallet_ids
from openmonetize.catalog.records import PlanRecord, SubscriptionRecord

_PLAN_COLUMNS = ("plan_id, customer_id, name, credits, period, period_count, rollover, rollover_cap, features, "
                 "excluded_features, priority, created_at")
_SUB_COLUMNS = ("subscription_id, customer_id, plan_id, user_id, team_id, wallet_id, status, starts_at, cancelled_at, "
                "created_at, periods_granted, next_period_at")


class AlreadySubscribed(Exception):
    """The wallet already has an active subscription to this plan."""

    def __init__(self, subscription_id: str):
        super().__init__(subscription_id)
        self.subscription_id = subscription_id


# --- plans ---------------------------------------------------------------------------------
def create_plan(
    conn: psycopg.Connection, customer_id: str, name: str, credits: Decimal, period: str, period_count: int,
    rollover: str, rollover_cap: Decimal | None, features: list[str] | None, excluded_features: list[str], priority: int,
) -> PlanRecord:
    row = conn.cursor(row_factory=dict_row).execute(
        f"INSERT INTO plans ({_PLAN_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now()) "
        f"RETURNING {_PLAN_COLUMNS}",
        ("plan_" + secrets.token_hex(8), customer_id, name, credits, period, period_count, rollover, rollover_cap,
         features, excluded_features, priority),
    ).fetchone()
    return _plan(row)


def plans(conn: psycopg.Connection, customer_id: str) -> list[PlanRecord]:
    rows = conn.cursor(row_factory=dict_row).execute(
        f"SELECT {_PLAN_COLUMNS} FROM plans WHERE customer_id = %s ORDER BY created_at, plan_id", (customer_id,)
    )
    return [_plan(row) for row in rows]


def plan(conn: psycopg.Connection, customer_id: str, plan_id: str) -> PlanRecord | None:
    row = conn.cursor(row_factory=dict_row).execute(
        f"SELECT {_PLAN_COLUMNS} FROM plans WHERE customer_id = %s AND plan_id = %s", (customer_id, plan_id)
    ).fetchone()
    return _plan(row) if row else None


def _plan(row: dict) -> PlanRecord:
    return PlanRecord(
        row["plan_id"], row["customer_id"], row["name"], row["credits"], row["period"], row["period_count"],
        row["rollover"], row["rollover_cap"], None if row["features"] is None else tuple(row["features"]),
        tuple(row["excluded_features"]), row["priority"], row["created_at"],
    )


# --- subscriptions -------------------------------------------------------------------------
def subscribe(
    conn: psycopg.Connection, plan_: PlanRecord, user_id: str | None, team_id: str | None, starts_at: datetime,
) -> Subscription:
    """A new active subscription; AlreadySubscribed when the wallet has one to this plan."""
    wallet_id = wallet_ids.wallet_for(plan_.customer_id, user_id, team_id)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"subscribe:{plan_.plan_id}:{wallet_id}",))
        existing = conn.execute(
            "SELECT subscription_id FROM subscriptions WHERE customer_id = %s AND plan_id = %s AND wallet_id = %s "
            "AND status = 'active'", (plan_.customer_id, plan_.plan_id, wallet_id),
        ).fetchone()
        if existing:
            raise AlreadySubscribed(existing[0])
        row = conn.cursor(row_factory=dict_row).execute(
            "INSERT INTO subscriptions (subscription_id, customer_id, plan_id, user_id, team_id, wallet_id, starts_at, "
            f"next_period_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING {_SUB_COLUMNS}",
            ("sub_" + secrets.token_hex(8), plan_.customer_id, plan_.plan_id, user_id, team_id, wallet_id, starts_at,
             starts_at),
        ).fetchone()
    return _subscription(row)


def subscriptions(
    conn: psycopg.Connection, customer_id: str, *, plan_id: str | None = None, user_id: str | None = None,
    team_id: str | None = None, status: str | None = None, after: str | None = None, limit: int = 100,
) -> list[Subscription]:
    """The tenant's subscriptions in id order, filtered; at most `limit` after the id `after`."""
    where, args = ["customer_id = %s"], [customer_id]
    for column, value in (("plan_id", plan_id), ("user_id", user_id), ("team_id", team_id), ("status", status)):
        if value is not None:
            where.append(f"{column} = %s")
            args.append(value)
    if after is not None:
        where.append("subscription_id > %s")
        args.append(after)
    rows = conn.cursor(row_factory=dict_row).execute(
        f"SELECT {_SUB_COLUMNS} FROM subscriptions WHERE {' AND '.join(where)} ORDER BY subscription_id LIMIT %s",
        (*args, limit),
    )
    return [_subscription(row) for row in rows]


def subscription(conn: psycopg.Connection, customer_id: str, subscription_id: str) -> Subscription | None:
    row = conn.cursor(row_factory=dict_row).execute(
        f"SELECT {_SUB_COLUMNS} FROM subscriptions WHERE customer_id = %s AND subscription_id = %s",
        (customer_id, subscription_id),
    ).fetchone()
    return _subscription(row) if row else None


def cancel(conn: psycopg.Connection, customer_id: str, subscription_id: str) -> Subscription | None:
    """Cancel (no further grant; a cancelled one stays as it was); None: not this tenant's."""
    conn.execute(
        "UPDATE subscriptions SET status = 'cancelled', cancelled_at = now() "
        "WHERE customer_id = %s AND subscription_id = %s AND status = 'active'",
        (customer_id, subscription_id),
    )
    return subscription(conn, customer_id, subscription_id)


@dataclass(frozen=True)
class Subscription:
    """A subscription as the routes show it: its catalog record and the scheduler's progress."""

    record: SubscriptionRecord
    periods_granted: int  # periods dealt with (granted or skipped)
    next_period_at: datetime  # when the next period starts (is due)


def _subscription(row: dict) -> Subscription:
    record = SubscriptionRecord(
        row["subscription_id"], row["customer_id"], row["plan_id"], row["user_id"], row["team_id"], row["wallet_id"],
        row["status"], row["starts_at"], row["cancelled_at"], row["created_at"],
    )
    return Subscription(record, row["periods_granted"], row["next_period_at"])


# --- the scheduler's side ------------------------------------------------------------------
def due(conn: psycopg.Connection, now: datetime, customer_id: str | None = None, limit: int = 1000) -> list[str]:
    """Ids of active subscriptions with a period started at or before `now` not yet dealt with."""
    rows = conn.execute(
        "SELECT subscription_id FROM subscriptions WHERE status = 'active' AND next_period_at <= %s "
        "AND (%s::text IS NULL OR customer_id = %s) ORDER BY next_period_at, subscription_id LIMIT %s",
        (now, customer_id, customer_id, limit),
    ).fetchall()
    return [row[0] for row in rows]


def lock_due(conn: psycopg.Connection, subscription_id: str, now: datetime) -> dict | None:
    """Inside a transaction: the subscription (with its plan) row-locked if it is still due, else
    None, also when another scheduler holds it (SKIP LOCKED: that one deals with it)."""
    return conn.cursor(row_factory=dict_row).execute(
        "SELECT s.subscription_id, s.customer_id, s.wallet_id, s.starts_at, s.periods_granted, s.next_period_at, "
        "p.plan_id, p.credits, p.period, p.period_count, p.rollover, p.rollover_cap, p.priority "
        "FROM subscriptions s JOIN plans p USING (plan_id) "
        "WHERE s.subscription_id = %s AND s.status = 'active' AND s.next_period_at <= %s FOR UPDATE OF s SKIP LOCKED",
        (subscription_id, now),
    ).fetchone()


def record_period(
    conn: psycopg.Connection, due_: dict, k: int, start: datetime, end: datetime, command_ids: list[str], amount: Decimal,
) -> None:
    """Period k dealt with: its row in plan_grants, and the subscription moved to period k+1."""
    conn.execute(
        "INSERT INTO plan_grants (subscription_id, period, customer_id, wallet_id, period_start, period_end, "
        "command_ids, amount) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (due_["subscription_id"], k, due_["customer_id"], due_["wallet_id"], start, end, command_ids, amount),
    )
    conn.execute(
        "UPDATE subscriptions SET periods_granted = %s, next_period_at = %s WHERE subscription_id = %s",
        (k + 1, end, due_["subscription_id"]),
    )


def grants(conn: psycopg.Connection, customer_id: str, subscription_id: str) -> list[dict]:
    rows = conn.cursor(row_factory=dict_row).execute(
        "SELECT period, period_start, period_end, command_ids, amount, granted_at FROM plan_grants "
        "WHERE customer_id = %s AND subscription_id = %s ORDER BY period",
        (customer_id, subscription_id),
    )
    return list(rows)


# --- everything, for `catalog sync` --------------------------------------------------------
def all_records(conn: psycopg.Connection) -> Iterator[PlanRecord | SubscriptionRecord]:
    cur = conn.cursor(row_factory=dict_row)
    for row in cur.execute(f"SELECT {_PLAN_COLUMNS} FROM plans ORDER BY created_at").fetchall():
        yield _plan(row)
    for row in cur.execute(f"SELECT {_SUB_COLUMNS} FROM subscriptions ORDER BY created_at").fetchall():
        yield _subscription(row).record

