"""This API process's view of the billing catalog and its way to publish to it.

The lifespan of `router` (mounted by api/app.py) starts a `Catalog` in the background: rating
and the pricing listing answer from memory once it has read the whole topic (503 until then,
and `/ready` says `catalog: pending`). Writes go to Postgres first, then `publish` sends the
same records and waits for Kafka's acknowledgement, so a 2xx means every process has the new
version within about a second.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextlib import asynccontextmanager

from fastapi import APIRouter, Request

from api.errors import ApiError
from openmonetize.catalog.publisher import CatalogPublishError, CatalogPublisher
from openmonetize.catalog.records import Record
from openmonetize.catalog.view import Catalog
from openmonetize.logs import get_logger

log = get_logger(__name__)


@asynccontextmanager
async def lifespan(app):
    app.state.catalog = None
    app.state.catalog_status = "pending: reading the catalog topic"
    app.state.catalog_publisher = CatalogPublisher(app.state.settings)
    starting = asyncio.create_task(_start_catalog(app))
    try:
        yield
    finally:
        starting.cancel()
        if app.state.catalog is not None:
            await asyncio.to_thread(app.state.catalog.close)
        await asyncio.to_thread(app.state.catalog_publisher.close)


router = APIRouter(lifespan=lifespan)


async def _start_catalog(app) -> None:
    """Open the catalog and wait until it is current, retrying while Kafka is not there."""
    delay = 0.25
    while True:
        try:
            catalog = await asyncio.to_thread(lambda: Catalog(app.state.settings).start())
            if not await asyncio.to_thread(catalog.wait_until_current, 30.0):
                await asyncio.to_thread(catalog.close)
                raise TimeoutError("the catalog topic was not read to its end within 30s")
        except Exception as exc:  # noqa: BLE001 - Kafka down or the topic missing: retry
            app.state.catalog_status = f"error: {exc}"[:300]
            log.warning("catalog_start_failed", error=str(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
            continue
        app.state.catalog = catalog
        app.state.catalog_status = "ok"
        log.info("catalog_ready")
        return


def catalog_of(request: Request) -> Catalog:
    catalog = request.app.state.catalog
    if catalog is None:
        raise ApiError(
            503, "catalog_unavailable", f"the billing catalog is not loaded yet ({request.app.state.catalog_status})",
            headers={"Retry-After": str(request.app.state.settings.ingest_retry_after_s)},
        )
    return catalog


async def publish(request: Request, records: Sequence[Record], saved: str) -> None:
    """Publish what was just saved in Postgres; 503 naming it when Kafka does not acknowledge."""
    try:
        await asyncio.to_thread(request.app.state.catalog_publisher.publish, records)
    except CatalogPublishError as exc:
        raise ApiError(
            503, "catalog_unavailable",
            f"{saved} is saved but not yet in force: publishing it to the catalog failed ({exc}); "
            "it will be once `openmonetize catalog sync` runs",
            headers={"Retry-After": str(request.app.state.settings.ingest_retry_after_s)},
        ) from exc


async def in_db(request: Request, work, *args):
    """Run `work(conn, *args)` on a pooled Postgres connection, off the event loop."""

    def run():
        with request.app.state.db.connection() as conn:
            return work(conn, *args)

    return await asyncio.to_thread(run)
