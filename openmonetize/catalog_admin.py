"""Operator tasks on the billing catalog: republish it from Postgres, import a price snapshot.

Both are idempotent (records keep their keys, so the compacted topic keeps one of each) and
run by `stack up` after the migrations; `openmonetize catalog sync` and
`openmonetize admin import-prices` run them by hand.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date, datetime, timezone
from importlib.metadata import version as package_version

import psycopg

from openmonetize.billing import prices
from openmonetize.catalog.publisher import CatalogPublisher
from openmonetize.settings import Settings
from openmonetize.stores import catalog as catalog_store

# The first snapshot also prices the past: events already on the stream (replays) get a cost.
BEGINNING = datetime(1970, 1, 1, tzinfo=timezone.utc)


def sync(settings: Settings) -> int:
    """Publish every catalog record in Postgres; returns how many."""
    publisher = CatalogPublisher(settings)
    try:
        with psycopg.connect(settings.database_url) as conn:
            return publisher.publish(catalog_store.all_records(conn))
    finally:
        publisher.close()


def publish_tenant(settings: Settings, *customer_ids: str) -> None:
    """Publish new tenants' settings (their defaults), so the workers know them from their first
    event: without them their events would be parked as `unknown_customer`."""
    publisher = CatalogPublisher(settings)
    try:
        with psycopg.connect(settings.database_url) as conn:
            publisher.publish([catalog_store.tenant_settings(conn, customer_id) for customer_id in customer_ids])
    finally:
        publisher.close()


@dataclass(frozen=True)
class PriceImport:
    version: str
    effective_from: datetime
    inserted: int
    published: int


def import_prices(settings: Settings, day: date | None = None, only_if_missing: bool = False) -> PriceImport | None:
    """Snapshot the bundled genai-prices dataset as of `day` (default today) into provider_prices
    as version `genai-<package version>-<day>`, and publish it. None when `only_if_missing` and
    a snapshot is already stored."""
    day = day or datetime.now(timezone.utc).date()
    version = f"genai-{package_version('genai-prices')}-{day.isoformat()}"
    with psycopg.connect(settings.database_url) as conn:
        first = not catalog_store.has_dataset_snapshot(conn)
        if only_if_missing and not first:
            return None
        snapshot = prices.snapshot(day, version)
        if first:
            snapshot = [dataclasses.replace(p, effective_from=BEGINNING) for p in snapshot]
        inserted = catalog_store.insert_dataset_snapshot(conn, snapshot)
        stored = catalog_store.dataset_version(conn, version)
    publisher = CatalogPublisher(settings)
    try:
        published = publisher.publish(stored)
    finally:
        publisher.close()
    effective = stored[0].price.effective_from if stored else snapshot[0].effective_from
    return PriceImport(version, effective, inserted, published)
