"""The catalog in Postgres, its source of truth: new burn-table versions, price overrides and
dataset snapshots, and reading everything back (for the routes and `catalog sync`).

Versions are only ever inserted. Numbering a new version (max + 1) holds a transaction-scoped
advisory lock on what is being versioned, so concurrent writers queue instead of colliding.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from decimal import Decimal

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from openmonetize.billing.burn_tables import BurnTable, RateRule, parse_rules
from openmonetize.billing.prices import ProviderPrice
from openmonetize.catalog.json_codec import rules_json
from openmonetize.catalog.records import PRICE_FIELDS, BurnTableRecord, PriceRecord, Record, TenantSettings

_BURN_COLUMNS = "burn_table_id, customer_id, name, version, effective_from, rules, created_at, " \
    "min(created_at) OVER (PARTITION BY burn_table_id) AS table_created_at"
_PRICE_COLUMNS = f"customer_id, provider, model, version, effective_from, {', '.join(PRICE_FIELDS)}"


# --- burn tables ---------------------------------------------------------------------------
def create_burn_table(
    conn: psycopg.Connection, customer_id: str, name: str, rules: Mapping[str, RateRule], effective_from: datetime
) -> BurnTableRecord:
    burn_table_id = "bt_" + secrets.token_hex(8)
    with conn.transaction():
        _insert_version(conn, burn_table_id, customer_id, name, 1, rules, effective_from)
        return burn_table_versions(conn, customer_id, burn_table_id)[-1]


def add_burn_table_version(
    conn: psycopg.Connection, customer_id: str, burn_table_id: str, rules: Mapping[str, RateRule], effective_from: datetime
) -> BurnTableRecord | None:
    """Version max+1 of a table of this tenant; None when the tenant has no such table."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (burn_table_id,))
        latest = conn.execute(
            "SELECT name, version FROM burn_tables WHERE burn_table_id = %s AND customer_id = %s "
            "ORDER BY version DESC LIMIT 1",
            (burn_table_id, customer_id),
        ).fetchone()
        if latest is None:
            return None
        name, version = latest
        _insert_version(conn, burn_table_id, customer_id, name, version + 1, rules, effective_from)
        return burn_table_versions(conn, customer_id, burn_table_id)[-1]


def _insert_version(conn, burn_table_id, customer_id, name, version, rules, effective_from) -> None:
    conn.execute(
        "INSERT INTO burn_tables (burn_table_id, customer_id, name, version, effective_from, rules) "
        "VALUES (%s, %s, %s, %s, %s, %s)",
        (burn_table_id, customer_id, name, version, effective_from, Jsonb(rules_json(rules))),
    )


def burn_table_versions(conn: psycopg.Connection, customer_id: str, burn_table_id: str) -> list[BurnTableRecord]:
    """Every version of one of the tenant's tables, oldest first; [] when it is not theirs."""
    rows = conn.cursor(row_factory=dict_row).execute(
        f"SELECT {_BURN_COLUMNS} FROM burn_tables WHERE burn_table_id = %s AND customer_id = %s ORDER BY version",
        (burn_table_id, customer_id),
    )
    return [_burn_record(row) for row in rows]


def latest_burn_tables(conn: psycopg.Connection, customer_id: str) -> list[BurnTableRecord]:
    """The latest version of each of the tenant's tables, newest table first."""
    rows = conn.cursor(row_factory=dict_row).execute(
        f"SELECT * FROM (SELECT DISTINCT ON (burn_table_id) {_BURN_COLUMNS} FROM burn_tables "
        "WHERE customer_id = %s ORDER BY burn_table_id, version DESC) latest "
        "ORDER BY table_created_at DESC, burn_table_id",
        (customer_id,),
    )
    return [_burn_record(row) for row in rows]


def _burn_record(row: dict) -> BurnTableRecord:
    table = BurnTable(
        burn_table_id=row["burn_table_id"],
        customer_id=row["customer_id"],
        name=row["name"],
        version=row["version"],
        effective_from=row["effective_from"],
        rules=parse_rules(row["rules"]),
    )
    return BurnTableRecord(table, row["created_at"], row["table_created_at"])


# --- provider prices -----------------------------------------------------------------------
def put_price_override(
    conn: psycopg.Connection,
    customer_id: str,
    provider: str,
    model: str,
    amounts: Mapping[str, Decimal | None],
    effective_from: datetime,
) -> PriceRecord:
    """A new override version `override-N` of a model's price for one tenant."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{customer_id}:{provider}:{model}",))
        (count,) = conn.execute(
            "SELECT count(*) FROM provider_prices WHERE customer_id = %s AND provider = %s AND model = %s",
            (customer_id, provider, model),
        ).fetchone()
        price = ProviderPrice(provider, model, effective_from, f"override-{count + 1}", **amounts)
        _insert_prices(conn, [price], customer_id)
    return PriceRecord(price, customer_id)


def has_dataset_snapshot(conn: psycopg.Connection) -> bool:
    return conn.execute("SELECT EXISTS (SELECT 1 FROM provider_prices WHERE customer_id IS NULL)").fetchone()[0]


def insert_dataset_snapshot(conn: psycopg.Connection, snapshot: Sequence[ProviderPrice]) -> int:
    """Store a dataset snapshot (the global prices); rows of a version already stored are kept.
    Returns how many rows were new."""
    with conn.transaction():
        return _insert_prices(conn, snapshot, None)


def _insert_prices(conn, prices: Sequence[ProviderPrice], customer_id: str | None) -> int:
    with conn.cursor() as cur:
        cur.executemany(
            f"INSERT INTO provider_prices ({_PRICE_COLUMNS}) VALUES ({', '.join(['%s'] * (5 + len(PRICE_FIELDS)))}) "
            "ON CONFLICT DO NOTHING",
            [
                (customer_id, p.provider, p.model, p.version, p.effective_from, *(getattr(p, f) for f in PRICE_FIELDS))
                for p in prices
            ],
        )
        return cur.rowcount


def dataset_version(conn: psycopg.Connection, version: str) -> list[PriceRecord]:
    rows = conn.cursor(row_factory=dict_row).execute(
        f"SELECT {_PRICE_COLUMNS} FROM provider_prices WHERE customer_id IS NULL AND version = %s", (version,)
    )
    return [_price_record(row) for row in rows]


def _price_record(row: dict) -> PriceRecord:
    price = ProviderPrice(
        provider=row["provider"],
        model=row["model"],
        effective_from=row["effective_from"],
        version=row["version"],
        **{name: row[name] for name in PRICE_FIELDS},
    )
    return PriceRecord(price, row["customer_id"])


# --- tenant settings -----------------------------------------------------------------------
_TENANT_COLUMNS = "customer_id, credit_price_usd, routing_order, unfunded_policy, features, disabled_features"


def tenant_settings(conn: psycopg.Connection, customer_id: str) -> TenantSettings:
    """The tenant's settings, or the defaults while it has never set any."""
    row = conn.execute(
        f"SELECT {_TENANT_COLUMNS} FROM tenant_settings WHERE customer_id = %s", (customer_id,)
    ).fetchone()
    return _tenant(*row) if row else TenantSettings(customer_id)


def put_tenant_settings(conn: psycopg.Connection, settings: TenantSettings) -> TenantSettings:
    row = conn.execute(
        f"""INSERT INTO tenant_settings ({_TENANT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)
            ON CONFLICT (customer_id) DO UPDATE SET credit_price_usd = EXCLUDED.credit_price_usd,
                routing_order = EXCLUDED.routing_order, unfunded_policy = EXCLUDED.unfunded_policy,
                features = EXCLUDED.features, disabled_features = EXCLUDED.disabled_features, updated_at = now()
            RETURNING {_TENANT_COLUMNS}""",
        (settings.customer_id, settings.credit_price_usd, list(settings.routing_order), settings.unfunded_policy,
         None if settings.features is None else list(settings.features), list(settings.disabled_features)),
    ).fetchone()
    return _tenant(*row)


def _tenant(customer_id, credit_price_usd, routing_order, unfunded_policy, features, disabled_features) -> TenantSettings:
    return TenantSettings(customer_id, credit_price_usd, tuple(routing_order), unfunded_policy,
                          None if features is None else tuple(features), tuple(disabled_features or ()))


# --- everything, for `catalog sync` --------------------------------------------------------
def all_records(conn: psycopg.Connection) -> Iterator[Record]:
    cur = conn.cursor(row_factory=dict_row)
    for row in conn.execute(f"SELECT {_TENANT_COLUMNS} FROM tenant_settings").fetchall():
        yield _tenant(*row)
    # Every tenant is published, with the defaults until it sets any: the workers know it at once.
    for (customer_id,) in conn.execute(
        "SELECT customer_id FROM customers c WHERE NOT EXISTS "
        "(SELECT 1 FROM tenant_settings t WHERE t.customer_id = c.customer_id)"
    ).fetchall():
        yield TenantSettings(customer_id)
    for row in cur.execute(f"SELECT {_BURN_COLUMNS} FROM burn_tables ORDER BY created_at").fetchall():
        yield _burn_record(row)
    for row in cur.execute(f"SELECT {_PRICE_COLUMNS} FROM provider_prices ORDER BY created_at").fetchall():
        yield _price_record(row)
    from openmonetize.stores import plans as plans_store  # stores.plans reads the catalog's record types

    yield from plans_store.all_records(conn)
