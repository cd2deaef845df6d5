"""This API process's side of the wallets: the wallet.commands codec the credits routes write
with, and the wallet.balances view they read and wait on.

The lifespan of `router` (mounted by api/app.py) registers both schemas (idempotently, as the
worker does) and opens the view in the background, retrying while Postgres or Kafka is not
there. The credits routes answer 503 until the view has read the whole topic once, and `/ready`
says `wallet_balances: pending` until then.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import APIRouter, Request

from api.errors import ApiError
from openmonetize.logs import get_logger
from openmonetize.wallet_balances import WalletBalances
from schemas.codec import AvroCodec, schema_text
from schemas.topics import topics

log = get_logger(__name__)


@dataclass(frozen=True)
class Wallets:
    commands_topic: str
    command_codec: AvroCodec
    balances: WalletBalances


@asynccontextmanager
async def lifespan(app):
    app.state.wallets = None
    app.state.wallets_status = "pending: reading wallet.balances"
    starting = asyncio.create_task(_start(app))
    try:
        yield
    finally:
        starting.cancel()
        if app.state.wallets is not None:
            await asyncio.to_thread(app.state.wallets.balances.close)


router = APIRouter(lifespan=lifespan)


async def _start(app) -> None:
    delay = 0.25
    while True:
        try:
            wallets = await asyncio.to_thread(_open, app)
        except Exception as exc:  # noqa: BLE001 - Postgres or Kafka not there yet, the topic missing: retry
            app.state.wallets_status = f"error: {exc}"[:300]
            log.warning("wallet_balances_start_failed", error=str(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
            continue
        app.state.wallets = wallets
        app.state.wallets_status = "ok"
        log.info("wallet_balances_ready", wallets=len(wallets.balances.view))
        return


def _open(app) -> Wallets:
    settings, registry = app.state.settings, app.state.schema_registry
    specs = topics(settings)

    def codec(spec) -> AvroCodec:
        text = schema_text(spec.schema_file)
        return AvroCodec(text, registry.register(spec.subject, text), registry)

    command_codec = codec(specs.wallet_commands)
    balances = WalletBalances(settings.kafka_bootstrap, specs.wallet_balances.name, codec(specs.wallet_balances)).start()
    if not balances.wait_until_current(30.0):
        balances.close()
        raise TimeoutError("wallet.balances was not read to its end within 30s")
    return Wallets(specs.wallet_commands.name, command_codec, balances)


def wallets_of(request: Request) -> Wallets:
    wallets = request.app.state.wallets
    if wallets is None:
        raise ApiError(
            503, "balances_unavailable", f"wallet balances are not loaded yet ({request.app.state.wallets_status})",
            headers={"Retry-After": str(request.app.state.settings.ingest_retry_after_s)},
        )
    return wallets
