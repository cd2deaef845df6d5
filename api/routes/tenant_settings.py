"""A tenant's billing settings: its credit price, the wallet routing order, the unfunded policy.

`GET /v1/customers/{id}/settings` answers the settings in force (the defaults until set);
`PUT` changes the fields it names and keeps the others. Like every catalog write it goes to
Postgres, then to the billing catalog topic, so the workers rate and route with it within a
second. The path must name the API key's own tenant (403 otherwise).
"""

from __future__ import annotations

from decimal import Decimal

import msgspec
from fastapi import APIRouter, Depends, Request

from api import json_bodies
from api.auth import tenant
from api.catalog_state import in_db, publish
from api.errors import ApiError
from openmonetize.billing.money import quantize
from openmonetize.catalog.records import ROUTING_LEVELS, UNFUNDED_POLICIES, TenantSettings
from openmonetize.stores import catalog as catalog_store
from openmonetize.stores.users_and_teams import feature_ids

router = APIRouter(tags=["tenant settings"])
MAX_CREDIT_PRICE_USD = Decimal(1_000_000)


class SettingsIn(msgspec.Struct, forbid_unknown_fields=True):
    credit_price_usd: Decimal | None = None
    routing_order: list[str] | None = None
    unfunded_policy: str | None = None
    features: list[str] | None | msgspec.UnsetType = msgspec.UNSET
    disabled_features: list[str] | None = None


class SettingsOut(msgspec.Struct):
    customer_id: str
    credit_price_usd: str
    routing_order: list[str]
    unfunded_policy: str
    features: list[str] | None  # the declared feature ids; null: not declared (any id is accepted)
    disabled_features: list[str]  # entitlement checks of these answer allowed: false, reason feature_disabled


_decoder = json_bodies.decoder(SettingsIn)
_OUT = json_bodies.schema(SettingsOut)
_DOC = {"description": (
    f"credit_price_usd: USD revenue per credit (margin = credits x price - provider cost), >= 0. "
    f"routing_order: the wallets an event may be charged to, first existing wins, a non-empty "
    f"ordering of {list(ROUTING_LEVELS)}. unfunded_policy: {list(UNFUNDED_POLICIES)}: a debit past the "
    f"balance overdraws the wallet, or goes to usage.dlq as insufficient_credits. features: the tenant's feature ids "
    f"(null: not declared, plans may then name any id; leave out to keep them), what plans' feature lists are checked "
    f"against. disabled_features: features switched off for the whole tenant: an entitlement check naming one answers "
    f"allowed: false, reason feature_disabled (usage events of them are still billed).")}


@router.get(
    "/v1/customers/{customer_id}/settings",
    summary="The tenant's billing settings in force (defaults until set)",
    responses={200: json_bodies.content("The settings", _OUT), **json_bodies.errors(401, 403)},
)
async def get_settings(request: Request, customer_id: str, caller: str = Depends(tenant)):
    json_bodies.check_customer(customer_id, caller)
    return json_bodies.respond(_out(await in_db(request, catalog_store.tenant_settings, caller)))


@router.put(
    "/v1/customers/{customer_id}/settings",
    summary="Change the tenant's billing settings; fields left out keep their value",
    responses={200: json_bodies.content("The settings now in force", _OUT), **json_bodies.errors(
        400, 401, 403, 422, 503, descriptions={400: "The body is not JSON (`malformed_json`)"})},
    openapi_extra=json_bodies.request_body({**json_bodies.schema(SettingsIn), **_DOC}),
)
async def put_settings(request: Request, customer_id: str, caller: str = Depends(tenant)):
    json_bodies.check_customer(customer_id, caller)
    body = await json_bodies.read(request, _decoder)
    current = await in_db(request, catalog_store.tenant_settings, caller)
    wanted = TenantSettings(
        caller,
        _price(body.credit_price_usd) if body.credit_price_usd is not None else current.credit_price_usd,
        _order(body.routing_order) if body.routing_order is not None else current.routing_order,
        _policy(body.unfunded_policy) if body.unfunded_policy is not None else current.unfunded_policy,
        _features(body.features, "features") if body.features is not msgspec.UNSET else current.features,
        _features(body.disabled_features, "disabled_features") if body.disabled_features is not None
        else current.disabled_features,
    )
    if wanted.features is not None:
        for i, feature in enumerate(wanted.disabled_features):
            if feature not in wanted.features:
                raise ApiError(422, "unknown_feature", f"{feature!r} is not one of the declared features",
                               f"disabled_features[{i}]")
    saved = await in_db(request, catalog_store.put_tenant_settings, wanted)
    await publish(request, [saved], f"settings of {caller}")
    return json_bodies.respond(_out(saved))


def _price(value: Decimal) -> Decimal:
    if not value.is_finite() or value < 0 or value > MAX_CREDIT_PRICE_USD:
        raise ApiError(422, "invalid_settings", f"credit_price_usd must be between 0 and {MAX_CREDIT_PRICE_USD}",
                       "credit_price_usd")
    if quantize(value) != value:
        raise ApiError(422, "invalid_settings", "credit_price_usd has more than 12 decimal places", "credit_price_usd")
    return value


def _order(levels: list[str]) -> tuple[str, ...]:
    if not levels or len(set(levels)) != len(levels) or not set(levels) <= set(ROUTING_LEVELS):
        raise ApiError(422, "invalid_settings", f"routing_order must list distinct values of {list(ROUTING_LEVELS)}",
                       "routing_order")
    return tuple(levels)


def _policy(policy: str) -> str:
    if policy not in UNFUNDED_POLICIES:
        raise ApiError(422, "invalid_settings", f"unfunded_policy must be one of {list(UNFUNDED_POLICIES)}",
                       "unfunded_policy")
    return policy


def _features(ids: list[str] | None, field: str) -> tuple[str, ...] | None:
    return None if ids is None else feature_ids(ids, field, "invalid_settings")


def _out(settings: TenantSettings) -> SettingsOut:
    return SettingsOut(settings.customer_id, f"{settings.credit_price_usd.normalize():f}",
                       list(settings.routing_order), settings.unfunded_policy,
                       None if settings.features is None else list(settings.features),
                       list(settings.disabled_features))
