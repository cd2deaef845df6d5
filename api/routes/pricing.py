"""Provider prices (USD per million tokens, per image, per unit) as they apply to a tenant.

The global prices are snapshots of the genai-prices dataset (`openmonetize admin
import-prices`); a tenant overrides a model's price with `PUT`, which stores a new override
version (`override-N`) in force from its `effective_from` (default now). The listing answers
from this process's catalog, so it shows what rating uses.

Names are the dataset's (`openmonetize.billing.model_names`): `PUT .../OpenAI/gpt-4-turbo-2024-04-09`
overrides openai/gpt-4-turbo, and `?provider=OPENAI` lists openai's prices; a name the dataset
does not know is kept as sent (its provider lower-cased).
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import msgspec
from fastapi import APIRouter, Depends, Query, Request

from api import json_bodies
from api.auth import tenant
from api.catalog_state import catalog_of, in_db, publish
from api.errors import ApiError
from openmonetize.billing import model_names
from openmonetize.billing.money import MAX_DIGITS, SCALE
from openmonetize.catalog.json_codec import decimal_text
from openmonetize.catalog.records import PRICE_FIELDS, PriceRecord
from openmonetize.stores import catalog as catalog_store

router = APIRouter(tags=["provider prices"])

MAX_NAME = 256


class PriceOverrideIn(msgspec.Struct, forbid_unknown_fields=True):
    input_mtok: Decimal | None = None
    output_mtok: Decimal | None = None
    cache_read_mtok: Decimal | None = None
    per_image: Decimal | None = None
    per_unit: Decimal | None = None
    effective_from: datetime | None = None
    customer_id: str | None = None


class PriceOut(msgspec.Struct):
    provider: str
    model: str
    source: str  # "dataset" (the genai-prices snapshot) or "override" (this tenant's)
    version: str
    effective_from: datetime
    input_mtok: str | None
    output_mtok: str | None
    cache_read_mtok: str | None
    per_image: str | None
    per_unit: str | None


class PriceList(msgspec.Struct):
    prices: list[PriceOut]


_override = json_bodies.decoder(PriceOverrideIn)
_OVERRIDE_SCHEMA = json_bodies.schema(PriceOverrideIn)
for _name in PRICE_FIELDS:  # a JSON number or a decimal string, both read exactly
    _OVERRIDE_SCHEMA["properties"][_name] = {"type": ["number", "string", "null"], "description": "USD, >= 0"}


@router.get(
    "/v1/providers/pricing",
    summary="Provider prices in force now for this tenant (its overrides applied)",
    responses={200: json_bodies.content("One row per model", json_bodies.schema(PriceList)), **json_bodies.errors(401, 503)},
)
async def list_prices(
    request: Request,
    provider: str | None = Query(None, description="Only this provider (e.g. openai; OPENAI and OpenAI name it too)"),
    model: str | None = Query(None, description="Only this model (e.g. gpt-4o; an alias such as claude-3.5-sonnet or "
                                                "a dated name names the dataset's model)"),
    customer_id: str = Depends(tenant),
):
    if provider is not None and model is not None:
        provider, model = model_names.canonical(provider, model)
    elif provider is not None:
        provider = model_names.provider_id(provider)
    elif model is not None:
        model = model_names.canonical_model(model) or model
    records = catalog_of(request).prices_in_force(customer_id, datetime.now(timezone.utc), provider, model)
    return json_bodies.respond(PriceList([price_out(r) for r in records]))


@router.put(
    "/v1/providers/pricing/{provider}/{model:path}",
    summary="Override a model's price for this tenant (a new override version)",
    description="Stored under the dataset's names when it knows them: `OpenAI/gpt-4-turbo-2024-04-09` overrides "
                "openai/gpt-4-turbo (the answer shows the names used); other names are kept, the provider lower-cased.",
    responses={
        200: json_bodies.content("The new override version", json_bodies.schema(PriceOut)),
        **json_bodies.errors(400, 401, 403, 413, 422, 503, descriptions={
            400: "The path holds a control character, a line break included (`invalid_path`)"}),
    },
    openapi_extra=json_bodies.request_body(_OVERRIDE_SCHEMA),
)
async def put_override(request: Request, provider: str, model: str, customer_id: str = Depends(tenant)):
    body = await json_bodies.read(request, _override)
    json_bodies.check_customer(body.customer_id, customer_id)
    for name, value in (("provider", provider), ("model", model)):
        if not value.strip() or len(value) > MAX_NAME:
            raise ApiError(422, "invalid_request", f"must be 1 to {MAX_NAME} characters", name)
    provider, model = model_names.canonical(provider, model)
    amounts = _amounts(body)
    record = await in_db(
        request, catalog_store.put_price_override, customer_id, provider, model, amounts,
        json_bodies.effective_from(body.effective_from),
    )
    await publish(request, [record], f"the {provider}/{model} price override {record.price.version}")
    return json_bodies.respond(price_out(record))


def _amounts(body: PriceOverrideIn) -> dict[str, Decimal | None]:
    amounts = {name: getattr(body, name) for name in PRICE_FIELDS}
    problems = [(name, reason) for name, value in amounts.items() if (reason := _problem(value))]
    if all(value is None for value in amounts.values()):
        problems.append(("input_mtok", f"give at least one price ({', '.join(PRICE_FIELDS)})"))
    if problems:
        raise ApiError(
            422, "invalid_price", "; ".join(f"{f}: {r}" for f, r in problems), problems[0][0],
            details={"problems": [{"field": f, "reason": r} for f, r in problems]},
        )
    return amounts


def _problem(value: Decimal | None) -> str | None:
    """Why an amount can't be a price (numeric(38, 12), >= 0), or None."""
    if value is None:
        return None
    if not value.is_finite() or value < 0:
        return f"must be a finite number >= 0, got {value}"
    if value.as_tuple().exponent < -SCALE or value >= Decimal(10) ** (MAX_DIGITS - SCALE):
        return f"must fit decimal({MAX_DIGITS}, {SCALE}), got {value}"
    return None


def price_out(record: PriceRecord) -> PriceOut:
    p = record.price
    amounts = {name: None if getattr(p, name) is None else decimal_text(getattr(p, name)) for name in PRICE_FIELDS}
    return PriceOut(p.provider, p.model, record.source, p.version, p.effective_from, **amounts)
