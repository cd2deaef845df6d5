"""Entitlement checks: may this user make a call that costs about this much, answered from memory.

`POST /v1/entitlements/check` rates the estimate (credits, or event-like usage rated with the
tenant's burn table in force now, as the usage agent will rate the event), routes it to the
wallet the event will be charged to (`wallet_ids.route`, the usage agent's rule), and compares
that wallet's `available` (this process's view of wallet.balances, minus the holds this
process wrote that the view does not show yet: api/holds.py) with the credits required:
`allowed = available >= required`, whatever the tenant's unfunded policy, which the answer
names (`policy`) so the caller knows whether a call made anyway would still be charged
(`allow_overdraft`) or refused by the wallet agent (`reject`). No database, no Kafka: the API
key is cached (api/auth.py), the catalog and the balances are in memory.

With `"reserve": true` an allowed check also holds the credits: a `reserve` command on
wallet.commands whose id is the `reservation_id`; the usage event that names it settles the
hold (the hold is dropped and the actual credits debited), `POST /v1/entitlements/release`
drops it early, and otherwise it lapses after `reserve_ttl_s`. The wallet agent lapses holds
lazily (when the wallet is next touched), so at a hold's expiry this process sends a `release`
for it (a no-op if it was settled) and the balances show it at once. `?wait=true` waits until
the agent applied the hold and refuses it (`contended`) if, applied, the wallet's available
went below zero: a hold written by another API process at the same moment got there first.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import msgspec
import orjson
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from prometheus_client import Histogram

from api import entitlement_decisions as decisions
from api import entitlement_requests as requests_
from api import hold_expiry, idempotency, json_bodies
from api.auth import tenant
from api.catalog_state import catalog_of, in_db
from api.entitlement_requests import ACTION_TYPES, Check, CheckIn, ForeignCustomer, ReleaseIn, RequestError
from api.errors import ApiError
from api.holds import Hold, Holds
from api.idempotency import Outcome
from api.wallet_access import Codecs, balances_of, codecs_of, wallet_exists
from openmonetize import wallet_ids
from openmonetize.catalog.json_codec import decimal_text
from openmonetize.logs import get_logger
from schemas.usage_event import EVENT_TYPES, EventLimits

log = get_logger(__name__)

CHECK_SECONDS = Histogram(
    "openmonetize_entitlement_check_seconds",
    "Entitlement check latency inside the route, by outcome (allowed, denied, reserved, contended, refused: a 4xx/5xx)",
    ["outcome"],
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)

router = APIRouter(tags=["entitlements"], lifespan=hold_expiry.lifespan)


class ReleaseOut(msgspec.Struct, omit_defaults=True):
    reservation_id: str
    wallet_id: str
    status: str  # accepted (202) or applied (200, `?wait=true`) or pending (202: the wait timed out)
    balance: str | None = None
    reserved: str | None = None
    available: str | None = None
    version: int | None = None


_DECIMAL = {"type": ["number", "string"], "description": "a JSON number or a decimal string, read exactly"}


def _check_schema() -> dict:
    schema = json_bodies.schema(CheckIn)
    def body_of(name: str) -> dict:  # the object schema of an optional (object | null) field, alone
        found = next(s for s in schema["properties"][name]["anyOf"] if s.get("type") == "object")
        schema["properties"][name] = found
        return found

    schema["oneOf"] = [{"required": ["estimate"]}, {"required": ["action"]}]
    action = body_of("action")
    action["description"] = (
        "instead of `estimate`: the seed's shape (type; provider, model, estimated_input_tokens, "
        "estimated_output_tokens or estimated_tokens; image_count, image_size, quality; unit_type, quantity)")
    action["properties"]["type"] = {
        "type": "string", "default": "llm_call",
        "description": f"one of {', '.join(ACTION_TYPES)}, in any case (llm_call is token_usage)"}
    action["properties"]["quantity"] = {**_DECIMAL, "description": ">= 0, at most 12 decimal places (audio, custom)"}
    estimate = body_of("estimate")
    estimate["description"] = (
        "`credits`, or an event-like usage estimate (`event_type` and its units) rated with the burn table in force now"
    )
    estimate["properties"]["event_type"] = {"type": "string", "enum": list(EVENT_TYPES)}
    estimate["properties"]["credits"] = {**_DECIMAL, "description": "credits, > 0, at most 12 decimal places"}
    estimate["properties"]["quantity"] = {**_DECIMAL, "description": ">= 0, at most 12 decimal places"}
    estimate["properties"]["max_output_tokens"]["description"] = "an upper bound of output_tokens (not both)"
    schema["properties"]["reserve_ttl_s"]["description"] = (
        "seconds the hold lasts (default ENTITLEMENT_RESERVE_TTL_S, at most ENTITLEMENT_MAX_RESERVE_TTL_S)"
    )
    return schema


_check_body = json_bodies.decoder(CheckIn)
_release_body = json_bodies.decoder(ReleaseIn)
_WAIT_CHECK = Query(False, description="With `reserve`: wait (up to CREDITS_WAIT_TIMEOUT_S) until the wallet agent "
                                       "applied the hold, and refuse it (`contended`) if it over-commits the wallet")
_WAIT_RELEASE = Query(False, description="Wait (up to CREDITS_WAIT_TIMEOUT_S) until the wallet agent applied the release")
_KEY = Header(None, alias="Idempotency-Key",
              description="With `reserve`: retry-safe key (1-255 printable ASCII); the reservation_id derives from it")


@router.post(
    "/v1/entitlements/check",
    summary="May this user spend about this much? From memory; optionally hold the credits",
    responses={
        200: json_bodies.content(
            "The decision. `allowed` is `available >= required`; with `reserve` and allowed, the hold's `reservation_id`. "
            "`reason` when denied: insufficient_credits, contended, feature_disabled (the tenant switched the feature "
            "off), feature_not_in_plan (none of the user's or team's plans includes it; `actions` names the plans that "
            "do: upgrade)",
            json_bodies.schema(decisions.CheckOut)),
        **json_bodies.errors(400, 401, 403, 409, 413, 422, 503, descriptions={
            400: "The body is not JSON (`malformed_json`)",
            409: "The idempotency key was used for a different request (`idempotency_conflict`)",
            422: "A field is invalid (`invalid_request`, `invalid_amount`; `field` names it), "
                 "or nothing in force prices the estimate (`no_rate`)",
            503: "The catalog or the balances are not loaded yet, or Kafka / Postgres (idempotency keys) is "
                 "unavailable for a hold; retry after `Retry-After`",
        }),
    },
    openapi_extra=json_bodies.request_body(_check_schema()),
)
async def check(request: Request, wait: bool = _WAIT_CHECK, key: str | None = _KEY, customer_id: str = Depends(tenant)):
    start = time.perf_counter()
    outcome = "refused"
    try:
        response, outcome = await _check_one(request, customer_id, key, wait)
        return response
    finally:
        CHECK_SECONDS.labels(outcome).observe(time.perf_counter() - start)


async def _check_one(request: Request, customer_id: str, header_key: str | None, wait: bool) -> tuple[Response, str]:
    settings = request.app.state.settings
    body = await json_bodies.read(request, _check_body)
    now = datetime.now(timezone.utc)
    try:
        check_ = requests_.parse_check(
            body, tenant=customer_id, header_key=header_key, limits=EventLimits.from_settings(settings),
            max_amount=settings.credits_max_amount, default_ttl_s=settings.entitlement_reserve_ttl_s,
            max_ttl_s=settings.entitlement_max_reserve_ttl_s, now=now,
        )
    except ForeignCustomer:
        raise json_bodies.foreign_customer() from None
    except RequestError as exc:
        code = "invalid_amount" if exc.field == "estimate.credits" else "invalid_request"
        raise ApiError(422, code, str(exc), exc.field) from None

    catalog = catalog_of(request)
    out = decisions.new_answer(catalog, customer_id, check_)
    if not decisions.gate(catalog, customer_id, check_, out):
        return json_bodies.respond(out), "denied"  # before pricing: a switched-off feature needs no estimate
    required = decisions.price(catalog, customer_id, check_, now, out)

    balances = balances_of(request)
    codecs = codecs_of(request) if check_.reserve else None  # 503 before anything is claimed or written
    claimed = None
    if check_.reserve and check_.idempotency_key is not None:
        claimed = await _claim(request, check_)
        if claimed.outcome is Outcome.REPLAY:
            return Response(claimed.body, claimed.status, {"Idempotent-Replayed": "true"},
                            media_type="application/json"), "reserved"

    # From here to registering the hold nothing awaits: two checks of this process see each other's holds.
    holds: Holds = request.app.state.entitlement_holds
    reservation_id = check_.reservation_id() if check_.reserve else None
    decisions.assess(catalog, balances, wallet_exists(request, balances), holds, customer_id, check_, reservation_id, required,
           now, out)
    wallet_id = out.wallet_id
    if not out.allowed:
        return json_bodies.respond(out), "denied"  # an idempotency key stays unanswered: a retry checks again
    if not check_.reserve:
        return json_bodies.respond(out), "allowed"
    if required <= 0:
        return json_bodies.respond(out), "allowed"  # nothing to hold (the estimate rates to 0 credits)

    expires_at = now + timedelta(seconds=check_.ttl_s)
    watch = balances.watch(wallet_id, reservation_id)
    hold = Hold(reservation_id, customer_id, wallet_id, required, expires_at,
                applied=watch.future.done, close=watch.close)
    if not holds.add(hold):
        watch.close()  # a twin of this request (same key) in this process registered it
    record = codecs.command.encode(requests_.reserve_command(check_, reservation_id, wallet_id, required, now))
    waiting = balances.watch(wallet_id, reservation_id) if wait else None  # before the write, like `hold`'s watch
    try:
        await _produce(request, codecs, wallet_id, record, "the hold")
        hold_expiry.HOLDS.labels("written").inc()
        applied = await waiting.applied(settings.credits_wait_timeout_s) if waiting is not None else None
    except ApiError:
        holds.discard(reservation_id)
        raise
    finally:
        if waiting is not None:
            waiting.close()
    out.reservation_id, out.reservation_expires_at, out.reservation_status = reservation_id, expires_at, "accepted"
    outcome = "reserved"
    if wait:
        if applied is None:
            out.reservation_status = "pending"
        elif applied.available < 0:
            # Over-committed once applied: another process's hold (or usage) took the credits first.
            await _release(request, codecs, customer_id, wallet_id, reservation_id, "contended entitlement hold")
            holds.discard(reservation_id)
            hold_expiry.HOLDS.labels("contended").inc()
            out.allowed, out.reason, outcome = False, "contended", "contended"
            out.actions = [{"type": "retry", "message": "another hold took the credits first: check again"}]
            out.available = decimal_text(applied.available + required)
            out.reservation_id = out.reservation_expires_at = out.reservation_status = None
        else:
            out.reservation_status = "applied"
    encoded = orjson.dumps(msgspec.to_builtins(out))
    if claimed is not None:
        # A hold refused as contended was written and released: its id cannot be held again, so
        # that answer is kept for the key too (a retry needs a new key).
        try:
            await in_db(request, idempotency.complete, customer_id, check_.idempotency_key, 200, encoded)
        except Exception as exc:  # noqa: BLE001 - the hold is written; a retry writes it again, applied once
            log.warning("idempotency_complete_failed", reservation_id=reservation_id, error=str(exc))
    return Response(encoded, 200, media_type="application/json"), outcome


@router.post(
    "/v1/entitlements/release",
    summary="Drop a hold before its expiry (a no-op if it was settled, released or lapsed)",
    status_code=202,
    responses={
        200: json_bodies.content("`?wait=true`: applied; the wallet's balance after it", json_bodies.component(ReleaseOut)),
        202: json_bodies.content("Accepted (acknowledged by Kafka)", json_bodies.component(ReleaseOut)),
        **json_bodies.errors(400, 401, 403, 404, 413, 422, 503, descriptions={
            400: "The body is not JSON (`malformed_json`)",
            404: "`wallet_id` names no wallet of this tenant (`unknown_wallet`)",
            422: "A field is invalid (`invalid_request`); `field` names it",
            503: "Kafka or the balances view is unavailable; retry after `Retry-After`",
        }),
    },
    openapi_extra=json_bodies.request_body(json_bodies.schema(ReleaseIn)),
)
async def release(request: Request, wait: bool = _WAIT_RELEASE, customer_id: str = Depends(tenant)):
    body = await json_bodies.read(request, _release_body)
    try:
        wanted = requests_.parse_release(body, tenant=customer_id)
    except ForeignCustomer:
        raise json_bodies.foreign_customer() from None
    except RequestError as exc:
        raise ApiError(422, "invalid_request", str(exc), exc.field) from None
    balances = balances_of(request)
    codecs = codecs_of(request)
    holds: Holds = request.app.state.entitlement_holds
    own = holds.get(wanted.reservation_id)
    own = own if own is not None and own.customer_id == customer_id else None
    if wanted.wallet_id is not None:
        wallet_id = wanted.wallet_id
        known = balances.get(wallet_id)
        ours = (known is not None and known.customer_id == customer_id) or (own is not None and own.wallet_id == wallet_id)
        if not ours:
            # Never write to a wallet that does not exist: a command opens it, and routing would change.
            raise ApiError(404, "unknown_wallet", "wallet_id names no wallet of this tenant (yet)", "wallet_id")
    elif own is not None:
        wallet_id = own.wallet_id
    else:
        order = catalog_of(request).tenant(customer_id).routing_order
        wallet_id = wallet_ids.route(customer_id, wanted.user_id, wanted.team_id, order, wallet_exists(request, balances))
        if balances.get(wallet_id) is None:
            raise ApiError(404, "unknown_wallet", f"{wallet_id} has no balance yet: no hold to release there", "user_id")
    command = requests_.release_command(customer_id, wallet_id, wanted.reservation_id, datetime.now(timezone.utc),
                                        "released by the client")
    watch = balances.watch(wallet_id, command["command_id"]) if wait else None
    try:
        await _produce(request, codecs, wallet_id, codecs.command.encode(command), "the release")
        holds.discard(wanted.reservation_id)
        hold_expiry.HOLDS.labels("released").inc()
        if watch is None:
            return json_bodies.respond(ReleaseOut(wanted.reservation_id, wallet_id, "accepted"), 202)
        applied = await watch.applied(request.app.state.settings.credits_wait_timeout_s)
    finally:
        if watch is not None:
            watch.close()
    if applied is None:
        return json_bodies.respond(ReleaseOut(wanted.reservation_id, wallet_id, "pending"), 202)
    return json_bodies.respond(ReleaseOut(
        wanted.reservation_id, wallet_id, "applied", decimal_text(applied.balance), decimal_text(applied.reserved),
        decimal_text(applied.available), applied.version,
    ))


async def _claim(request: Request, check_: Check) -> idempotency.Claim:
    try:
        claimed = await in_db(request, idempotency.claim, check_.customer_id, check_.idempotency_key,
                              "entitlements/check", check_.fingerprint(), check_.reservation_id())
    except Exception as exc:  # noqa: BLE001 - Postgres down or the pool exhausted: not the client's fault
        raise ApiError(
            503, "idempotency_unavailable", f"idempotency keys cannot be checked right now ({type(exc).__name__}); retry later",
            headers={"Retry-After": str(request.app.state.settings.ingest_retry_after_s)},
        ) from exc
    if claimed.outcome is Outcome.CONFLICT:
        raise ApiError(409, "idempotency_conflict",
                       "this idempotency key was already used for a different request; use a new key for a new request",
                       "idempotency_key")
    return claimed


async def _produce(request: Request, codecs: Codecs, wallet_id: str, record: bytes, what: str) -> None:
    delivery = await request.app.state.intake.producer.produce(codecs.commands_topic, [(wallet_id.encode(), record)], 1)
    if delivery.error is not None:
        log.warning("entitlement_command_not_acknowledged", wallet_id=wallet_id, error=delivery.error)
        raise ApiError(
            503, "kafka_unavailable",
            f"Kafka did not acknowledge {what} ({delivery.error}); it may or may not have been written. Retry "
            "(with the same idempotency key: a hold is then applied at most once)",
            headers={"Retry-After": str(request.app.state.settings.ingest_retry_after_s)},
        )


async def _release(request: Request, codecs: Codecs, customer_id: str, wallet_id: str, reservation_id: str,
                   reason: str) -> None:
    command = requests_.release_command(customer_id, wallet_id, reservation_id, datetime.now(timezone.utc), reason)
    await _produce(request, codecs, wallet_id, codecs.command.encode(command), "the release")
