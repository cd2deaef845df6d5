"""`POST /v1/rating/calculate`: what one usage event would cost, priced as the stream workers
price it (`openmonetize.billing.rating.rate` with the burn-table version, provider price and
tenant settings in force at the event's timestamp), from this process's in-memory catalog.

`event_type` may be left out, as the seed's `rating.calculate({provider, model, input_tokens,
output_tokens})` does; it is then inferred from the units given (INFERENCE below): token
counts → TOKEN_USAGE, `image_count` → IMAGE_GENERATION, `unit_type`/`quantity` → CUSTOM.
Units of more than one kind, or none, are refused (422) naming the field: say `event_type`
(EMBEDDING and AUDIO are never inferred)."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import msgspec
from fastapi import APIRouter, Depends, Header, Request

from api import json_bodies
from api.auth import tenant
from api.catalog_state import catalog_of
from api.errors import ApiError
from openmonetize.billing.rating import NoRate, RateParams
from schemas.usage_event import EVENT_TYPES, Id, Label
from schemas.usage_units import RATING_WORDING, TOKEN_FIELDS, UnitBounds, UnitsError, check_units

router = APIRouter(tags=["rating"])


class RatingIn(msgspec.Struct, forbid_unknown_fields=True):
    """The rating fields of a usage event (the contract's names); a whole event is accepted too."""

    event_type: str | None = None  # default: inferred from the units (INFERENCE)
    timestamp: datetime | None = None  # default: now
    provider: Label | None = None
    model: Label | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_input_tokens: int | None = None
    image_count: int | None = None
    image_size: Label | None = None
    quality: Label | None = None
    unit_type: Label | None = None
    quantity: Decimal | None = None
    customer_id: Id | None = None
    # Not used by rating; accepted so that a usage event can be posted unchanged.
    event_id: Id | None = None
    user_id: Id | None = None
    team_id: Id | None = None
    feature_id: Id | None = None
    reservation_id: Id | None = None
    metadata: dict[str, str] | None = None


class RatingOut(msgspec.Struct):
    credits: Decimal
    usd_cost: Decimal
    revenue_usd: Decimal  # credits x the tenant's credit_price_usd
    margin_usd: Decimal
    margin_percent: Decimal | None  # of revenue; null when revenue is 0
    credit_price_usd: Decimal
    rule_key: str
    burn_table_id: str
    burn_table_version: int
    price_version: str | None  # null: no provider price (usd_cost 0)
    price_source: str | None  # "dataset" or "override"
    timestamp: datetime


_rating = json_bodies.decoder(RatingIn)
# Without event_type: the one kind of units given decides it.
INFERENCE = (
    ("TOKEN_USAGE", TOKEN_FIELDS),
    ("IMAGE_GENERATION", ("image_count",)),
    ("CUSTOM", ("unit_type", "quantity")),
)
UNITS = tuple(name for _, names in INFERENCE for name in names)
UNBOUNDED = UnitBounds()
INFERENCE_DOC = (
    "Without event_type, the event type is inferred from the units given: input_tokens, output_tokens or "
    "cached_input_tokens → TOKEN_USAGE; image_count → IMAGE_GENERATION; unit_type or quantity → CUSTOM. Units of "
    "more than one of these kinds are refused (422, field event_type); give event_type for EMBEDDING and AUDIO.")
_RATING_SCHEMA = json_bodies.schema(RatingIn)
_RATING_SCHEMA["properties"]["event_type"] = {"type": "string", "enum": list(EVENT_TYPES),
                                               "description": "Optional. " + INFERENCE_DOC}


@router.post(
    "/v1/rating/calculate",
    summary="Rate one usage event with the catalog in force at its timestamp",
    responses={
        200: json_bodies.content("Credits, USD cost and margin, and the versions that produced them",
                                 json_bodies.schema(RatingOut)),
        **json_bodies.errors(401, 403, 413, 422, 503, descriptions={
            422: "The body is invalid (`invalid_request`), or nothing in force prices it (`no_rate`)"}),
    },
    description=(
        "Credits, USD cost and margin of one usage event, rated as the stream will rate it. The seed's body "
        "(`provider`, `model`, `input_tokens`, `output_tokens`) works as is. " + INFERENCE_DOC),
    openapi_extra=json_bodies.request_body(_RATING_SCHEMA),
)
async def calculate(
    request: Request,
    _key: str | None = Header(None, alias="Idempotency-Key", description=(
        "Accepted and ignored: rating is pure (it reads the catalog and writes nothing), so a retry is always safe "
        "and answers the same while the catalog is unchanged")),
    customer_id: str = Depends(tenant),
):
    body = await json_bodies.read(request, _rating)
    json_bodies.check_customer(body.customer_id, customer_id)
    usage = _params(body)
    catalog = catalog_of(request)
    try:
        rated = catalog.rate_event(customer_id, usage)
    except NoRate as exc:
        raise ApiError(422, "no_rate", str(exc)) from None
    result = rated.result
    return json_bodies.respond(RatingOut(
        result.credits, result.usd_cost, result.revenue_usd, result.margin_usd, result.margin_percent,
        rated.credit_price_usd, result.rule_key, result.burn_table_id, result.burn_table_version, result.price_version,
        rated.price.source if rated.price else None, usage.timestamp,
    ))


def event_type_of(body: RatingIn) -> str:
    """The body's event_type, else the one INFERENCE gives; 422 naming the field otherwise."""
    if body.event_type is not None and body.event_type not in EVENT_TYPES:
        raise ApiError(422, "invalid_request", f"unknown event type {body.event_type!r}; one of {', '.join(EVENT_TYPES)}",
                       "event_type")
    kinds = [(kind, names) for kind, names in INFERENCE if any(getattr(body, name) is not None for name in names)]
    if not kinds:
        raise ApiError(422, "invalid_request", "no units to rate: give input_tokens and output_tokens, image_count, or "
                       "unit_type and quantity", "input_tokens", details={"missing": list(UNITS)})
    if body.event_type is not None:
        return body.event_type
    if len(kinds) > 1:
        given = " and ".join(f"{'/'.join(names)} ({kind})" for kind, names in kinds)
        raise ApiError(422, "invalid_request", f"units of more than one kind: {given}; give event_type", "event_type")
    return kinds[0][0]


def _params(body: RatingIn) -> RateParams:
    event_type = event_type_of(body)
    try:
        check_units(body, UNBOUNDED, RATING_WORDING)  # a preview: the event bounds do not apply
    except UnitsError as exc:
        raise ApiError(422, "invalid_request", exc.reason, exc.field) from None
    timestamp = json_bodies.effective_from(body.timestamp, "timestamp").astimezone(timezone.utc)
    return RateParams.from_units(event_type, timestamp, body)
