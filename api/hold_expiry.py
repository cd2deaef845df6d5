"""Holds lapse at their expiry at once, not when their wallet is next touched: every second, each
API process sends a `release` for each of its holds past its expiry while the wallet still
shows credits reserved (a no-op if the hold was settled). Started with the entitlement routes.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone

from prometheus_client import Counter

from api import entitlement_requests as requests_
from api.holds import Holds
from openmonetize.logs import get_logger

log = get_logger(__name__)

HOLDS = Counter(
    "openmonetize_entitlement_holds_total",
    "Holds by what became of them in this process: written, contended (released: ?wait found them over-committed), "
    "released (by the release route), expired (a release sent at their expiry)",
    ["event"],
)
SWEEP_INTERVAL_S = 1.0
EXPIRY_GRACE = timedelta(milliseconds=500)  # the agent lapses a hold strictly after its expiry


@asynccontextmanager
async def lifespan(app):
    app.state.entitlement_holds = Holds()
    sweeping = asyncio.create_task(_sweep(app))
    try:
        yield
    finally:
        sweeping.cancel()


async def _sweep(app) -> None:
    """Every second: send a release for each hold of this process past its expiry while its
    wallet still shows credits reserved, so the agent lapses it now rather than when the wallet
    is next touched (a no-op if the hold was settled)."""
    while True:
        await asyncio.sleep(SWEEP_INTERVAL_S)
        try:
            await _sweep_once(app)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - Kafka down: the agent still lapses the hold lazily
            log.warning("entitlement_sweep_failed", error=str(exc))


async def _sweep_once(app) -> None:
    holds: Holds = app.state.entitlement_holds
    due = holds.due(datetime.now(timezone.utc) - EXPIRY_GRACE)
    balances, codecs = app.state.wallet_balances, app.state.wallet_codecs
    if not due or balances is None or codecs is None:
        return
    now = datetime.now(timezone.utc)
    records = []
    for hold in due:
        found = balances.get(hold.wallet_id)
        if found is not None and found.reserved > 0:
            command = requests_.release_command(hold.customer_id, hold.wallet_id, hold.reservation_id, now, "hold expired")
            records.append((hold.wallet_id.encode(), codecs.command.encode(command)))
    if records:
        delivery = await app.state.intake.producer.produce(codecs.commands_topic, records, len(records))
        if delivery.error is not None:
            log.warning("entitlement_expiry_release_failed", holds=len(records), error=delivery.error)
        HOLDS.labels("expired").inc(len(records))
