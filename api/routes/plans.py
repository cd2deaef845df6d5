"""Plans and subscriptions: N credits per period to each subscribed user or team.

A plan (per tenant, never edited) grants `credits` every `period_count` x `period` (day, week,
month, year) to each subscriber's wallet, with a rollover policy carried out by the grants'
expiry (`none`: unused credits lapse at the period's end; `full`: they never lapse; `capped`:
at most `rollover_cap` carries into the next period, for one period; openmonetize/plans/periods.py),
and the features it includes (`features`, null: all) or excludes (`excluded_features`): an
entitlement check of a user or team with active subscriptions is refused
(`feature_not_in_plan`) for a feature none of their plans includes.

A subscription's periods are anchored on `starts_at`. Each period's grant is issued by the
scheduler (openmonetize/plans/scheduler.py: `openmonetize plans run-due`, and every
PLANS_SCHEDULER_INTERVAL_S inside each API process under a Postgres advisory lock); subscribing
also issues the first period at once when it has started. Grants are idempotent: their command
ids derive from (tenant, subscription, period start). Cancelling stops future grants; what was
granted stays until it expires.

Plans and subscriptions are written to Postgres, then published to the billing catalog, so
entitlement checks gate features from memory. Every POST takes an `Idempotency-Key`.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Annotated, Any

import msgspec
import orjson
from fastapi import APIRouter, Depends, Header, Query, Request, Response

from api import cursors, idempotency, json_bodies, plan_scheduling
from api.auth import tenant
from api.catalog_state import in_db, publish
from api.credit_requests import RequestError, parse_amount
from api.errors import ApiError
from openmonetize.catalog.json_codec import decimal_text
from openmonetize.catalog.records import PlanRecord
from openmonetize.logs import get_logger
from openmonetize.plans import periods, scheduler
from openmonetize.stores import catalog as catalog_store
from openmonetize.stores import plans as store
from openmonetize.stores.plans import AlreadySubscribed, Subscription
from openmonetize.stores.users_and_teams import ID as ID_PATTERN
from openmonetize.stores.users_and_teams import feature_ids
from schemas import storable

log = get_logger(__name__)

Id = storable.ident(128)
Name = storable.text(200)
MAX_START_SKEW = timedelta(days=400)


router = APIRouter(tags=["plans and subscriptions"], lifespan=plan_scheduling.lifespan)


# --- bodies --------------------------------------------------------------------------------
class PlanIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    credits: Any  # a JSON number or a decimal string: parse_amount
    period: str = "month"
    period_count: int = 1
    rollover: str = "none"
    rollover_cap: Any = None
    features: list[str] | None = None
    excluded_features: list[str] = []
    priority: Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)] = 0
    customer_id: Id | None = None


class PlanOut(msgspec.Struct):
    plan_id: str
    customer_id: str
    name: str
    credits: str
    period: str
    period_count: int
    rollover: str
    rollover_cap: str | None
    features: list[str] | None  # null: every feature
    excluded_features: list[str]
    priority: int
    created_at: datetime


class PlansOut(msgspec.Struct):
    plans: list[PlanOut]


class SubscribeIn(msgspec.Struct, forbid_unknown_fields=True):
    plan_id: Id
    user_id: Id | None = None
    team_id: Id | None = None
    starts_at: datetime | None = None
    customer_id: Id | None = None


class GrantOut(msgspec.Struct):
    period: int
    period_start: datetime
    period_end: datetime
    credits: str  # 0: skipped, its credits would already have expired
    command_ids: list[str]
    granted_at: datetime


class SubscriptionOut(msgspec.Struct, omit_defaults=True):
    subscription_id: str
    customer_id: str
    plan_id: str
    user_id: str | None
    team_id: str | None
    wallet_id: str
    status: str  # active or cancelled
    starts_at: datetime
    cancelled_at: datetime | None
    created_at: datetime
    periods_granted: int
    next_grant_at: datetime | None  # the next period's start; null once cancelled
    grants: list[GrantOut] | None = None  # GET of one subscription: every period dealt with


class SubscriptionsOut(msgspec.Struct):
    subscriptions: list[SubscriptionOut]
    next_cursor: str | None


_plan_body = json_bodies.decoder(PlanIn)
_subscribe_body = json_bodies.decoder(SubscribeIn)
_KEY = Header(None, alias="Idempotency-Key", description=idempotency.KEY_HEADER_DOC)
_AMOUNT = {"type": ["number", "string"], "examples": ["1000", 250.5]}


def _plan_schema() -> dict:
    schema = json_bodies.schema(PlanIn)
    props = schema["properties"]
    props["credits"] = {**_AMOUNT, "description": "credits granted each period: > 0, at most 12 decimal places and "
                                                  "CREDITS_MAX_AMOUNT"}
    props["rollover_cap"] = {**_AMOUNT, "description": "with `capped`: the most credits carried into the next period"}
    props["period"] = {"type": "string", "enum": list(periods.PERIODS), "default": "month"}
    props["period_count"] = {"type": "integer", "minimum": 1, "maximum": periods.MAX_PERIOD_COUNT, "default": 1,
                             "description": "a period is `period_count` x `period` (e.g. 3 x month: quarterly)"}
    props["rollover"] = {"type": "string", "enum": list(periods.ROLLOVERS), "default": "none", "description": (
        "none: unused credits lapse at the period's end; full: they never lapse; capped: at most rollover_cap carries "
        "into the next period (and lapses at its end)")}
    props["features"]["description"] = ("feature ids the plan includes (null: every feature); if the tenant declared "
                                        "its features (settings), each must be one of them")
    props["excluded_features"]["description"] = "feature ids the plan does not include"
    props["priority"]["description"] = "the grants' priority among lots expiring together (lower burns first)"
    return schema


def _subscribe_schema() -> dict:
    schema = json_bodies.schema(SubscribeIn)
    schema["properties"]["starts_at"]["description"] = (
        "when the first period starts (default now; RFC 3339 with a timezone, within 400 days of now); periods are "
        "anchored on it")
    schema["description"] = "user_id or team_id: the wallet the plan's credits are granted to"
    return schema


_PLAN = json_bodies.schema(PlanOut)
_SUBSCRIPTION = json_bodies.schema(SubscriptionOut)
_WRITE_ERRORS = {400: "The body is not JSON (`malformed_json`)",
                 409: "The idempotency key was used for a different request (`idempotency_conflict`)",
                 503: "Postgres, Kafka or the catalog is unavailable; retry after `Retry-After` (with the same key)"}


# --- plans ---------------------------------------------------------------------------------
@router.post(
    "/v1/plans",
    summary="Create a plan: credits granted every period to each subscriber, with a rollover policy and features",
    status_code=201,
    responses={201: json_bodies.content("The plan", _PLAN), **json_bodies.errors(
        400, 401, 403, 409, 413, 422, 503, descriptions={
            **_WRITE_ERRORS,
            422: "A field is invalid (`invalid_amount`, `invalid_request`, `unknown_feature`); `field` names it"})},
    openapi_extra=json_bodies.request_body(_plan_schema()),
)
async def create_plan(request: Request, key: str | None = _KEY, caller: str = Depends(tenant)):
    body = await json_bodies.read(request, _plan_body)
    json_bodies.check_customer(body.customer_id, caller)
    settings = request.app.state.settings
    credits = _amount(body.credits, "credits", settings.credits_max_amount)
    if body.period not in periods.PERIODS:
        raise ApiError(422, "invalid_request", f"period must be one of {list(periods.PERIODS)}", "period")
    if not 1 <= body.period_count <= periods.MAX_PERIOD_COUNT:
        raise ApiError(422, "invalid_request", f"period_count must be 1 to {periods.MAX_PERIOD_COUNT}", "period_count")
    if body.rollover not in periods.ROLLOVERS:
        raise ApiError(422, "invalid_request", f"rollover must be one of {list(periods.ROLLOVERS)}", "rollover")
    cap = None
    if body.rollover == "capped":
        if body.rollover_cap is None:
            raise ApiError(422, "invalid_request", "rollover capped needs rollover_cap", "rollover_cap")
        cap = _amount(body.rollover_cap, "rollover_cap", settings.credits_max_amount)
    elif body.rollover_cap is not None:
        raise ApiError(422, "invalid_request", "rollover_cap goes with rollover capped only", "rollover_cap")
    features = _features(body.features, "features") if body.features is not None else None
    excluded = _features(body.excluded_features, "excluded_features")
    declared = (await in_db(request, catalog_store.tenant_settings, caller)).features
    for field, ids in (("features", features or []), ("excluded_features", excluded)):
        for i, feature in enumerate(ids):
            if declared is not None and feature not in declared:
                raise ApiError(422, "unknown_feature", f"{feature!r} is not one of the tenant's features {list(declared)} "
                               "(PUT /v1/customers/{id}/settings declares them)", f"{field}[{i}]")

    def create(conn):
        plan = store.create_plan(conn, caller, body.name, credits, body.period, body.period_count, body.rollover, cap,
                                 features, excluded, body.priority)
        return 201, orjson.dumps(msgspec.to_builtins(_plan_out(plan))), plan

    parts = (body.name, str(credits), body.period, body.period_count, body.rollover, str(cap), features, excluded,
             body.priority)
    response, plan = await idempotency.respond_once(request, caller, key, "POST /v1/plans", parts, create)
    if plan is not None:
        await publish(request, [plan], f"plan {plan.plan_id}")
    return response


@router.get(
    "/v1/plans",
    summary="The tenant's plans, oldest first",
    responses={200: json_bodies.content("The plans", json_bodies.schema(PlansOut)), **json_bodies.errors(401)},
)
async def list_plans(request: Request, caller: str = Depends(tenant)):
    return json_bodies.respond(PlansOut([_plan_out(p) for p in await in_db(request, store.plans, caller)]))


@router.get(
    "/v1/plans/{plan_id}",
    summary="A plan of the tenant",
    responses={200: json_bodies.content("The plan", _PLAN),
               **json_bodies.errors(401, 404, descriptions={404: "No such plan for this tenant (`plan_not_found`)"})},
)
async def get_plan(request: Request, plan_id: str, caller: str = Depends(tenant)):
    return json_bodies.respond(_plan_out(await _plan_or_404(request, caller, plan_id, "plan_id")))


# --- subscriptions -------------------------------------------------------------------------
@router.post(
    "/v1/subscriptions",
    summary="Subscribe a user or a team to a plan; the first period's grant is issued at once when it has started",
    status_code=201,
    responses={201: json_bodies.content("The subscription (`periods_granted` 1 when the first grant was issued)",
                                        _SUBSCRIPTION),
               **json_bodies.errors(400, 401, 403, 404, 409, 413, 422, 503, descriptions={
                   **_WRITE_ERRORS,
                   404: "No such plan for this tenant (`plan_not_found`)",
                   409: "The wallet already has an active subscription to the plan (`already_subscribed`), or the "
                        "idempotency key was used for a different request (`idempotency_conflict`)",
                   422: "A field is invalid (`invalid_request`); `field` names it"})},
    openapi_extra=json_bodies.request_body(_subscribe_schema()),
)
async def subscribe(request: Request, key: str | None = _KEY, caller: str = Depends(tenant)):
    body = await json_bodies.read(request, _subscribe_body)
    json_bodies.check_customer(body.customer_id, caller)
    if (body.user_id is None) == (body.team_id is None):
        raise ApiError(422, "invalid_request", "give user_id or team_id (one): the wallet the plan grants to", "user_id")
    for field, value in (("user_id", body.user_id), ("team_id", body.team_id)):
        if value is not None and not ID_PATTERN.fullmatch(value):
            raise ApiError(422, "invalid_request", "letters, digits and . _ : @ + -, starting with a letter or digit",
                           field)
    now = datetime.now(timezone.utc)
    starts_at = json_bodies.effective_from(body.starts_at, "starts_at") if body.starts_at else now
    if abs(starts_at - now) > MAX_START_SKEW:
        raise ApiError(422, "invalid_request", "starts_at must be within 400 days of now", "starts_at")
    plan = await _plan_or_404(request, caller, body.plan_id, "plan_id")

    def create(conn):
        try:
            found = store.subscribe(conn, plan, body.user_id, body.team_id, starts_at)
        except AlreadySubscribed as exc:
            raise ApiError(409, "already_subscribed", f"this wallet already has an active subscription to the plan: "
                           f"{exc.subscription_id}", "plan_id") from None
        return 201, orjson.dumps(msgspec.to_builtins(_subscription_out(found))), found

    parts = (body.plan_id, body.user_id, body.team_id, body.starts_at.isoformat() if body.starts_at else None)
    response, found = await idempotency.respond_once(request, caller, key, "POST /v1/subscriptions", parts, create)
    if found is None:
        return response
    await publish(request, [found.record], f"subscription {found.record.subscription_id}")
    if starts_at <= now:
        granted = await plan_scheduling.grant_due_now(request, found)
        if granted is not None:
            body_ = orjson.dumps(msgspec.to_builtins(_subscription_out(granted)))
            if key is not None:  # a replay answers what this answer says
                try:
                    await in_db(request, idempotency.restate, caller, key, 201, body_)
                except Exception as exc:  # noqa: BLE001 - the replay then shows the subscription before its grant
                    log.warning("idempotency_restate_failed", subscription_id=granted.record.subscription_id,
                                error=str(exc))
            return Response(body_, 201, media_type="application/json")
    return response


@router.get(
    "/v1/subscriptions",
    summary="The tenant's subscriptions, in id order, paged; filtered by plan, user, team or status",
    responses={200: json_bodies.content("A page of subscriptions", json_bodies.schema(SubscriptionsOut)),
               **json_bodies.errors(401, 422)},
)
async def list_subscriptions(
    request: Request,
    plan_id: str | None = Query(None, min_length=1, max_length=128),
    user_id: str | None = Query(None, min_length=1, max_length=128),
    team_id: str | None = Query(None, min_length=1, max_length=128),
    status: str | None = Query(None, pattern="^(active|cancelled)$"),
    cursor: str | None = Query(None, max_length=1000, description="`next_cursor` of the previous page"),
    limit: int = Query(100, ge=1, le=1000),
    caller: str = Depends(tenant),
):
    after = cursors.decode(cursor, 1)[0] if cursor is not None else None
    found = await in_db(request, lambda conn: store.subscriptions(
        conn, caller, plan_id=plan_id, user_id=user_id, team_id=team_id, status=status, after=after, limit=limit + 1))
    page = found[:limit]
    next_cursor = cursors.encode(page[-1].record.subscription_id) if len(found) > limit else None
    return json_bodies.respond(SubscriptionsOut([_subscription_out(s) for s in page], next_cursor))


@router.get(
    "/v1/subscriptions/{subscription_id}",
    summary="A subscription of the tenant, with every period granted",
    responses={200: json_bodies.content("The subscription and its grants", _SUBSCRIPTION), **json_bodies.errors(
        401, 404, descriptions={404: "No such subscription for this tenant (`subscription_not_found`)"})},
)
async def get_subscription(request: Request, subscription_id: str, caller: str = Depends(tenant)):
    def read(conn):
        return store.subscription(conn, caller, subscription_id), store.grants(conn, caller, subscription_id)

    found, grants = await in_db(request, read)
    if found is None:
        raise _no_subscription()
    out = _subscription_out(found)
    out.grants = [GrantOut(g["period"], g["period_start"], g["period_end"], decimal_text(g["amount"]),
                           list(g["command_ids"]), g["granted_at"]) for g in grants]
    return json_bodies.respond(out)


@router.post(
    "/v1/subscriptions/{subscription_id}/cancel",
    summary="Cancel a subscription: no further grant (what was granted stays until it expires); cancelling twice "
            "changes nothing",
    responses={200: json_bodies.content("The cancelled subscription", _SUBSCRIPTION), **json_bodies.errors(
        401, 404, 409, 422, 503, descriptions={
            **_WRITE_ERRORS,
            404: "No such subscription for this tenant (`subscription_not_found`)"})},
)
async def cancel(request: Request, subscription_id: str, key: str | None = _KEY, caller: str = Depends(tenant)):
    def do(conn):
        found = store.cancel(conn, caller, subscription_id)
        if found is None:
            raise _no_subscription()
        return 200, orjson.dumps(msgspec.to_builtins(_subscription_out(found))), found

    route = "POST /v1/subscriptions/{id}/cancel"
    response, found = await idempotency.respond_once(request, caller, key, route, (subscription_id,), do)
    if found is not None:
        await publish(request, [found.record], f"the cancellation of {subscription_id}")
    return response


# --- helpers -------------------------------------------------------------------------------
def _amount(value: Any, field: str, max_amount: Decimal) -> Decimal:
    try:
        return parse_amount(value, max_amount, field)
    except RequestError as exc:
        raise ApiError(422, "invalid_amount", str(exc), exc.field) from None


def _features(ids: list[str], field: str) -> list[str]:
    return list(feature_ids(ids, field, "invalid_request"))


async def _plan_or_404(request: Request, caller: str, plan_id: str, field: str) -> PlanRecord:
    found = await in_db(request, store.plan, caller, plan_id)
    if found is None:
        raise ApiError(404, "plan_not_found", f"no plan {plan_id!r} for this tenant", field)
    return found


def _no_subscription() -> ApiError:
    return ApiError(404, "subscription_not_found", "no such subscription for this tenant")


def _plan_out(plan: PlanRecord) -> PlanOut:
    return PlanOut(
        plan.plan_id, plan.customer_id, plan.name, decimal_text(plan.credits), plan.period, plan.period_count,
        plan.rollover, None if plan.rollover_cap is None else decimal_text(plan.rollover_cap),
        None if plan.features is None else list(plan.features), list(plan.excluded_features), plan.priority,
        plan.created_at,
    )


def _subscription_out(found: Subscription) -> SubscriptionOut:
    s = found.record
    return SubscriptionOut(
        s.subscription_id, s.customer_id, s.plan_id, s.user_id, s.team_id, s.wallet_id, s.status, s.starts_at,
        s.cancelled_at, s.created_at, found.periods_granted, found.next_period_at if s.status == "active" else None,
    )
