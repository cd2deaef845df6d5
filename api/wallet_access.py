"""This API process's side of the wallets: the wallet.commands codec the credits routes write
with, the wallet.balances view they read and wait on, and the wallet.directory they list a new
wallet in before its first command (openmonetize/wallet_directory.py).

The lifespan of `router` (mounted by api/app.py) registers both schemas (idempotently, as the
worker does; this needs the codecs' registry only), then opens the view, each step retrying in the
background while its dependency is not there. So a POST without `?wait` works as soon as the
schemas are registered (and answers `kafka_unavailable` when Kafka is down); reads and waits
answer 503 `balances_unavailable` until the view has read the whole topic once, and `/ready`
says `wallet_balances: pending` until then.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

from fastapi import APIRouter, Request

from api.errors import ApiError
from openmonetize import wallet_directory
from openmonetize.logs import get_logger
from openmonetize.wallet_balances import WalletBalances
from openmonetize.wallet_directory import WalletDirectory
from schemas.codec import AvroCodec
from schemas.topic_codecs import writer_codec
from schemas.topics import topics

log = get_logger(__name__)


@dataclass(frozen=True)
class Codecs:
    commands_topic: str
    command: AvroCodec
    balance: AvroCodec
    directory_topic: str
    directory_entry: AvroCodec


@asynccontextmanager
async def lifespan(app):
    app.state.wallet_codecs = None
    app.state.wallet_balances = None
    app.state.wallet_directory = None
    app.state.wallets_status = "pending: registering the wallet schemas"
    starting = asyncio.create_task(_start(app))
    try:
        yield
    finally:
        starting.cancel()
        for view in (app.state.wallet_balances, app.state.wallet_directory):
            if view is not None:
                await asyncio.to_thread(view.close)


router = APIRouter(lifespan=lifespan)


async def _start(app) -> None:
    app.state.wallet_codecs = await _retrying(app, "wallet_schemas_registration_failed", _register, app)
    app.state.wallets_status = "pending: reading wallet.balances"
    app.state.wallet_balances = await _retrying(app, "wallet_balances_start_failed", _open_view, app)
    app.state.wallets_status = "pending: reading wallet.directory"
    app.state.wallet_directory = await _retrying(app, "wallet_directory_start_failed", _open_directory, app)
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
    settings, registry = app.state.settings, app.state.codec_registry
    specs = topics(settings)

    def codec(spec) -> AvroCodec:
        return writer_codec(registry, spec)

    return Codecs(specs.wallet_commands.name, codec(specs.wallet_commands), codec(specs.wallet_balances),
                  specs.wallet_directory.name, codec(specs.wallet_directory))


def _open_view(app) -> WalletBalances:
    topic = topics(app.state.settings).wallet_balances.name
    balances = WalletBalances(app.state.settings.kafka_bootstrap, topic, app.state.wallet_codecs.balance).start()
    if not balances.wait_until_current(30.0):
        balances.close()
        raise TimeoutError(f"{topic} was not read to its end within 30s")
    return balances


def _open_directory(app) -> WalletDirectory:
    topic = topics(app.state.settings).wallet_directory.name
    directory = WalletDirectory(app.state.settings.kafka_bootstrap, topic).start()
    if not directory.wait_until_current(30.0):
        directory.close()
        raise TimeoutError(f"{topic} was not read to its end within 30s")
    return directory


def wallet_exists(request: Request, balances: WalletBalances) -> Callable[[str], bool]:
    """Routing's existence test in this process (the usage agent's rule, openmonetize/wallet_directory.py)."""
    return wallet_directory.exists(request.app.state.wallet_directory, balances.get)


async def open_wallet(request: Request, codecs: Codecs, command: dict, now: datetime) -> str | None:
    """List the wallet a command names in wallet.directory, unless this process already knows it
    exists; call before producing the command. The Kafka error when the entry was not acknowledged."""
    directory, balances = request.app.state.wallet_directory, request.app.state.wallet_balances
    wallet_id = command["wallet_id"]
    if directory is not None and balances is not None and wallet_directory.exists(directory, balances.get)(wallet_id):
        return None
    record = codecs.directory_entry.encode(wallet_directory.entry(command, now))
    delivery = await request.app.state.intake.producer.produce(codecs.directory_topic, [(wallet_id.encode(), record)], 1)
    return delivery.error


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
