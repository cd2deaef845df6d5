"""This API process's side of the wallets: the wallet.commands codec the credits routes write
with, and the wallet.balances view they read and wait on.

The lifespan of `router` (mounted by api/app.py) registers both schemas (idempotently, as the
worker does; this needs Postgres only), then opens the view, each step retrying in the
background while its dependency is not there. So a POST without `?wait` works as soon as the
schemas are registered (and answers `kafka_unavailable` when Kafka is down); reads and waits
answer 503 `balances_unavailable` until the view has read the whole topic once, and `/ready`
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
class Codecs:
    commands_topic: str
    command: AvroCodec
    balance: AvroCodec


@asynccontextmanager
async def lifespan(app):
    app.state.wallet_codecs = None
    app.state.wallet_balances = None
    app.state.wallets_status = "pending: registering the wallet schemas"
    starting = asyncio.create_task(_start(app))
    try:
        yield
    finally:
        starting.cancel()
        if app.state.wallet_balances is not None:
            await asyncio.to_thread(app.state.wallet_balances.close)


router = APIRouter(lifespan=lifespan)


async def _start(app) -> None:
    app.state.wallet_codecs = await _retrying(app, "wallet_schemas_registration_failed", _register, app)
    app.state.wallets_status = "pending: reading wallet.balances"
    app.state.wallet_balances = await _retrying(app, "wallet_balances_start_failed", _open_view, app)
    app.state.wallets_status = "ok"
    log.info("wallet_balances_ready", wallets=len(app.state.wallet_balances.view))


async def _retrying(app, event: str, work, *args):
    """`work(*args)` on a thread until it succeeds, backing off; failures show in /ready."""
    delay = 0.25
    while True:
        try:
            return await asyncio.to_thread(work, *args)
        except Exception as exc:  # noqa: BLE001 - Postgres or Kafka not there yet, the topic missing: retry
            app.state.wallets_status = f"error: {exc}"[:300]
            log.warning(event, error=str(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


def _register(app) -> Codecs:
    settings, registry = app.state.settings, app.state.schema_registry
    specs = topics(settings)

    def codec(spec) -> AvroCodec:
        text = schema_text(spec.schema_file)
        return AvroCodec(text, registry.register(spec.subject, text), registry)

    return Codecs(specs.wallet_commands.name, codec(specs.wallet_commands), codec(specs.wallet_balances))


def _open_view(app) -> WalletBalances:
    topic = topics(app.state.settings).wallet_balances.name
    balances = WalletBalances(app.state.settings.kafka_bootstrap, topic, app.state.wallet_codecs.balance).start()
    if not balances.wait_until_current(30.0):
        balances.close()
        raise TimeoutError(f"{topic} was not read to its end within 30s")
    return balances


def codecs_of(request: Request) -> Codecs:
    codecs = request.app.state.wallet_codecs
    if codecs is None:
        raise _unavailable(request, "wallet_schemas_unavailable", "the wallet command schema is not registered yet")
    return codecs


def balances_of(request: Request) -> WalletBalances:
    balances = request.app.state.wallet_balances
    if balances is None:
        raise _unavailable(request, "balances_unavailable", "wallet balances are not loaded yet")
    return balances


def _unavailable(request: Request, code: str, what: str) -> ApiError:
    return ApiError(
        503, code, f"{what} ({request.app.state.wallets_status})",
        headers={"Retry-After": str(request.app.state.settings.ingest_retry_after_s)},
    )
