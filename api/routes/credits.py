"""Credits: buy, grant and consume credits, and read a wallet's balance.

The three POSTs write ONE command to `wallet.commands` (keyed by wallet id, so the wallet's
single writer, the wallet agent, applies it in order) and answer once Kafka acknowledged it:
202 `accepted`. With `?wait=true` they wait until this process's view of `wallet.balances`
shows the command applied and answer 200 `applied` with the new balance, or, after
CREDITS_WAIT_TIMEOUT_S, 202 `pending`. A command the agent refuses (a consume beyond what is
available: a manual consume never overdraws) goes to `usage.dlq` and a waiting request simply
times out as `pending`.

An `Idempotency-Key` header (or the body's `idempotency_key`) makes a POST safe to retry: see
api/idempotency.py. The balance (`GET /v1/customers/{id}/credits`) is read from memory, never
from a database, and is as fresh as the agent's last published change.
"""

from __future__ import annotations

from datetime import datetime, timezone

import msgspec
import orjson
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from prometheus_client import Counter

from api import credit_requests, idempotency, json_bodies
from api.auth import tenant
from api.catalog_state import in_db
from api.credit_requests import ConsumeIn, CreditRequest, CreditsIn, ForeignCustomer, RequestError
from api.errors import ApiError
from api.idempotency import Outcome
from api.wallet_access import Codecs, balances_of, codecs_of, open_wallet
from openmonetize import wallet_ids
from openmonetize.catalog.json_codec import decimal_text
from openmonetize.logs import get_logger
from openmonetize.wallet_balances import Balance, WalletBalances

log = get_logger(__name__)
router = APIRouter(tags=["credits"])

COMMANDS = Counter("openmonetize_credit_commands_total", "Credits commands acknowledged by Kafka", ["kind"])
WAITS = Counter("openmonetize_credit_waits_total", "?wait=true requests, by outcome (applied, pending)", ["outcome"])
IDEMPOTENCY = Counter(
    "openmonetize_credit_idempotency_total", "Credits requests with an idempotency key, by outcome", ["outcome"]
)


class CommandOut(msgspec.Struct, omit_defaults=True):
    command_id: str
    wallet_id: str
    status: str  # accepted (202), applied (200, with the balance), pending (202: the wait timed out)
    balance: str | None = None
    reserved: str | None = None
    available: str | None = None
    version: int | None = None


class GrantOut(msgspec.Struct):
    id: str  # the command_id of the purchase, grant or adjustment that created the lot
    kind: str  # purchase, grant or adjustment
    granted: str
    remaining: str
    expires_at: datetime | None
    priority: int
    granted_at: datetime


class CreditsOut(msgspec.Struct):
    customer_id: str
    wallet_id: str
    balance: str
    reserved: str
    available: str
    grants: list[GrantOut]  # in the order usage burns them
    version: int  # changes applied to the wallet; 0: never funded nor charged
    updated_at: datetime | None


_AMOUNT = {
    "type": ["number", "string"],
    "description": "credits, > 0, at most 12 decimal places and CREDITS_MAX_AMOUNT; a JSON number or a decimal string, read exactly",
    "examples": ["100", 2.5],
}


def _body_schema(type_) -> dict:
    schema = json_bodies.schema(type_)
    schema["properties"]["amount"] = _AMOUNT
    return json_bodies.request_body(schema)


_COMMAND = json_bodies.component(CommandOut)  # 200 and 202
_POST_RESPONSES = {
    200: json_bodies.content("`?wait=true`: applied; the wallet's balance after it", _COMMAND),
    202: json_bodies.content("Accepted (acknowledged by Kafka), or `pending` when `?wait=true` timed out", _COMMAND),
    **json_bodies.errors(400, 401, 403, 409, 413, 422, 503, descriptions={
        400: "The body is not JSON (`malformed_json`)",
        403: "`customer_id` names another tenant than the API key's (`foreign_customer`)",
        409: "The idempotency key was used for a different request (`idempotency_conflict`)",
        422: "A field is invalid (`invalid_amount`, `invalid_request`); `field` names it",
        503: "Kafka, Postgres or the balances view is unavailable; retry after `Retry-After` (with the same idempotency key)",
    }),
}
_WAIT = Query(False, description="Wait (up to CREDITS_WAIT_TIMEOUT_S) until the wallet agent applied the command")
_KEY = Header(None, alias="Idempotency-Key", description="Retry-safe key (1-255 printable ASCII); or the body's idempotency_key")
_purchase = json_bodies.decoder(CreditsIn)
_consume = json_bodies.decoder(ConsumeIn)


@router.post(
    "/v1/credits/purchase",
    summary="Buy credits: a new lot in the wallet (user's, team's, or the customer's own)",
    status_code=202,
    responses=_POST_RESPONSES,
    openapi_extra=_body_schema(CreditsIn),
)
async def purchase(request: Request, wait: bool = _WAIT, key: str | None = _KEY, customer_id: str = Depends(tenant)):
    return await _submit(request, "purchase", _purchase, customer_id, wait, key)


@router.post(
    "/v1/credits/grant",
    summary="Grant promotional credits: a new lot, usually with an expiry",
    status_code=202,
    responses=_POST_RESPONSES,
    openapi_extra=_body_schema(CreditsIn),
)
async def grant(request: Request, wait: bool = _WAIT, key: str | None = _KEY, customer_id: str = Depends(tenant)):
    return await _submit(request, "grant", _purchase, customer_id, wait, key)


@router.post(
    "/v1/credits/consume",
    summary="Debit credits by hand; refused by the wallet agent (not applied) beyond what is available",
    status_code=202,
    responses=_POST_RESPONSES,
    openapi_extra=_body_schema(ConsumeIn),
)
async def consume(request: Request, wait: bool = _WAIT, key: str | None = _KEY, customer_id: str = Depends(tenant)):
    return await _submit(request, "consume", _consume, customer_id, wait, key)


@router.get(
    "/v1/customers/{customer_id}/credits",
    summary="A wallet's balance and lots, from memory (the customer's own wallet, or a user's or team's)",
    responses={
        200: json_bodies.content("The balance; zeros and no grants for a wallet never funded", json_bodies.schema(CreditsOut)),
        **json_bodies.errors(401, 403, 422, 503, descriptions={
            403: "The path names another tenant than the API key's (`foreign_customer`)",
            422: "user_id and team_id both given, or one is empty or too long",
            503: "The balances view is not loaded yet; retry after `Retry-After`",
        }),
    },
)
async def credits(
    request: Request,
    customer_id: str,
    user_id: str | None = Query(None, min_length=1, max_length=128, description="A user's wallet"),
    team_id: str | None = Query(None, min_length=1, max_length=128, description="A team's wallet"),
    caller: str = Depends(tenant),
):
    json_bodies.check_customer(customer_id, caller)
    if user_id is not None and team_id is not None:
        raise ApiError(422, "invalid_request", "give user_id or team_id, not both", "team_id")
    wallet_id = wallet_ids.wallet_for(caller, user_id, team_id)
    found = balances_of(request).get(wallet_id)
    if found is None or found.customer_id != caller:
        found = Balance.empty(wallet_id, caller)
    balance = found.as_of(datetime.now(timezone.utc))
    grants = [
        GrantOut(g.id, g.kind, decimal_text(g.granted), decimal_text(g.remaining), g.expires_at, g.priority, g.granted_at)
        for g in balance.grants
    ]
    return json_bodies.respond(CreditsOut(
        caller, wallet_id, decimal_text(balance.balance), decimal_text(balance.reserved), decimal_text(balance.available),
        grants, balance.version, balance.updated_at,
    ))


async def _submit(request: Request, kind: str, decoder, customer_id: str, wait: bool, header_key: str | None) -> Response:
    settings = request.app.state.settings
    body = await json_bodies.read(request, decoder)
    now = datetime.now(timezone.utc)
    try:
        credit = credit_requests.parse(
            kind, body, tenant=customer_id, header_key=header_key, max_amount=settings.credits_max_amount, now=now
        )
    except ForeignCustomer:
        raise json_bodies.foreign_customer() from None
    except RequestError as exc:
        code = "invalid_amount" if exc.field == "amount" else "invalid_request"
        raise ApiError(422, code, str(exc), exc.field) from None
    codecs = codecs_of(request)
    balances = balances_of(request) if wait else None  # 503 before anything is written
    command_id = credit.command_id()
    if credit.idempotency_key is not None:
        claimed = await _claim(request, credit, command_id)
        IDEMPOTENCY.labels(claimed.outcome.value).inc()
        if claimed.outcome is Outcome.CONFLICT:
            raise ApiError(
                409, "idempotency_conflict",
                "this Idempotency-Key was already used for a different request; use a new key for a new request",
                "Idempotency-Key" if header_key is not None else "idempotency_key",
            )
        if claimed.outcome is Outcome.REPLAY:
            return Response(claimed.body, claimed.status, {"Idempotent-Replayed": "true"}, media_type="application/json")
    status, out = await _write(request, codecs, balances, credit, command_id, now)
    encoded = orjson.dumps(msgspec.to_builtins(out))
    if credit.idempotency_key is not None:
        try:
            await in_db(request, idempotency.complete, customer_id, credit.idempotency_key, status, encoded)
        except Exception as exc:  # noqa: BLE001 - the command is written; a retry writes it again, applied once
            log.warning("idempotency_complete_failed", command_id=command_id, error=str(exc))
    return Response(encoded, status, media_type="application/json")


async def _claim(request: Request, credit: CreditRequest, command_id: str) -> idempotency.Claim:
    try:
        return await in_db(
            request, idempotency.claim, credit.customer_id, credit.idempotency_key, credit.kind, credit.fingerprint(), command_id
        )
    except Exception as exc:  # noqa: BLE001 - Postgres down or the pool exhausted: not the client's fault
        raise ApiError(
            503, "idempotency_unavailable", f"idempotency keys cannot be checked right now ({type(exc).__name__}); retry later",
            headers={"Retry-After": str(request.app.state.settings.ingest_retry_after_s)},
        ) from exc


async def _write(
    request: Request, codecs: Codecs, balances: WalletBalances | None, credit: CreditRequest, command_id: str,
    now: datetime,
) -> tuple[int, CommandOut]:
    """Produce the command (watching for it first when the caller waits, i.e. gave `balances`)
    and say what became of it."""
    settings = request.app.state.settings
    command = credit.command(command_id, now)
    record = codecs.command.encode(command)
    watch = balances.watch(credit.wallet_id, command_id) if balances is not None else None
    try:
        producer = request.app.state.intake.producer
        # Listed before its first command is acknowledged: usage sent after our answer is routed to it.
        error = await open_wallet(request, codecs, command, now)
        if error is None:
            error = (await producer.produce(codecs.commands_topic, [(credit.wallet_id.encode(), record)], 1)).error
        if error is not None:
            log.warning("credit_command_not_acknowledged", command_id=command_id, error=error)
            raise ApiError(
                503, "kafka_unavailable",
                f"Kafka did not acknowledge the command ({error}); it may or may not have been written. "
                "Retry with the same idempotency key: the command is then applied at most once",
                headers={"Retry-After": str(settings.ingest_retry_after_s)},
            )
        COMMANDS.labels(credit.kind).inc()
        if watch is None:
            return 202, CommandOut(command_id, credit.wallet_id, "accepted")
        applied = await watch.applied(settings.credits_wait_timeout_s)
    finally:
        if watch is not None:
            watch.close()
    WAITS.labels("applied" if applied else "pending").inc()
    if applied is None:
        return 202, CommandOut(command_id, credit.wallet_id, "pending")
    return 200, CommandOut(
        command_id, credit.wallet_id, "applied", decimal_text(applied.balance), decimal_text(applied.reserved),
        decimal_text(applied.available), applied.version,
    )

