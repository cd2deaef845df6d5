"""The entitlement routes' requests without HTTP: their bodies, the estimate, the hold and the
wallet commands they become. Pure, so every rule is unit tested
(tests/unit/api/test_entitlement_requests.py).

- An estimate is either `credits` (a JSON number or a decimal string, read exactly, as the
  credits routes read amounts) or an event-like usage estimate (`event_type` and its units),
  which the route rates with the tenant's burn table in force now. Not both, not neither.
- `max_output_tokens` is accepted for `output_tokens` (what a caller knows before an LLM call);
  not both.
- Instead of `estimate`, the seed's `action` (type, provider, model, estimated tokens), read as
  the same usage estimate. Its `type` is an event type in any case (`token_usage` as the seed
  writes it, `TOKEN_USAGE`, `image_generation`, `embedding`, `audio`, `custom`) or `llm_call`
  (= token_usage); errors name the action's own fields (`action.estimated_input_tokens`).
- A hold's id (`reservation_id`) is the reserve command's id: derived from (tenant, key) when
  the request has an idempotency key, so a retry names the same hold, else fresh.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
import orjson

from api.credit_requests import ForeignCustomer, Key, RequestError, idempotency_key, parse_amount
from openmonetize.billing.money import ZERO, quantize
from openmonetize.billing.rating import RateParams
from schemas import storable
from schemas.usage_event import EVENT_TYPES, EventLimits, Id, Label
from schemas.usage_units import (
    ESTIMATE_WORDING,
    QUANTITY_SCALE,
    TOKEN_FIELDS,
    UnitBounds,
    UnitsError,
    check_quantity,
    check_units,
)
from schemas.wallet_command import wallet_command

__all__ = ["ActionIn", "Check", "CheckIn", "EstimateIn", "ForeignCustomer", "Release", "ReleaseIn", "RequestError"]

WalletId = storable.ident(400)
_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
ESTIMATE_TOKENS = (*TOKEN_FIELDS, "max_output_tokens")  # max_output_tokens: an upper bound of output_tokens
UNITS = ("input_tokens", "output_tokens", "max_output_tokens", "cached_input_tokens", "image_count", "quantity")


class EstimateIn(msgspec.Struct, forbid_unknown_fields=True):
    """What the call about to be made will cost: `credits`, or the usage it will report."""

    credits: Any = None  # a JSON number or a decimal string: `parse_amount`
    event_type: str | None = None
    provider: Label | None = None
    model: Label | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    max_output_tokens: int | None = None  # an upper bound of output_tokens (the LLM call's max_tokens)
    cached_input_tokens: int | None = None
    image_count: int | None = None
    image_size: Label | None = None
    quality: Label | None = None
    unit_type: Label | None = None
    quantity: Any = None  # a JSON number or a decimal string


class ActionIn(msgspec.Struct, forbid_unknown_fields=True):
    """The seed's shape of what the user is about to do: a type and the estimated units.

    `type` is one of ACTION_TYPES, in any case (default llm_call); `estimated_tokens` is taken
    as input tokens when the split is not known; `unit_type` and `quantity` for audio and
    custom units."""

    type: str = "llm_call"
    provider: Label | None = None
    model: Label | None = None
    estimated_input_tokens: int | None = None
    estimated_output_tokens: int | None = None
    estimated_tokens: int | None = None
    image_count: int | None = None
    image_size: Label | None = None
    quality: Label | None = None
    unit_type: Label | None = None
    quantity: Any = None  # a JSON number or a decimal string


# An action type (matched case-insensitively) → the event type it estimates.
ACTION_TYPES = {"llm_call": "TOKEN_USAGE", **{event_type.lower(): event_type for event_type in EVENT_TYPES}}
ACTION_UNITS = ("estimated_input_tokens", "estimated_output_tokens", "estimated_tokens", "image_count", "quantity")


class CheckIn(msgspec.Struct, forbid_unknown_fields=True):
    """`POST /v1/entitlements/check`: an `estimate`, or the seed's `action`."""

    customer_id: Id
    user_id: Id
    estimate: EstimateIn | None = None
    action: ActionIn | None = None
    team_id: Id | None = None
    feature_id: Id | None = None
    reserve: bool = False
    reserve_ttl_s: int | None = None
    idempotency_key: Key | None = None


class ReleaseIn(msgspec.Struct, forbid_unknown_fields=True):
    """`POST /v1/entitlements/release`: the hold, and its wallet (as the check answered it) or
    the user (and team) the check named, to route again."""

    customer_id: Id
    reservation_id: Id
    wallet_id: WalletId | None = None
    user_id: Id | None = None
    team_id: Id | None = None


@dataclass(frozen=True)
class Check:
    customer_id: str
    user_id: str
    team_id: str | None
    feature_id: str | None
    credits: Decimal | None  # the estimate in credits, or None: rate `usage`
    usage: RateParams | None
    reserve: bool
    ttl_s: int
    idempotency_key: str | None

    def reservation_id(self) -> str:
        """Deterministic from (tenant, key) when there is a key, else fresh."""
        if self.idempotency_key is None:
            return "res_" + uuid.uuid4().hex
        return reservation_id_for(self.customer_id, self.idempotency_key)

    def fingerprint(self) -> bytes:
        """SHA-256 of what the request asks for (the key left out): an idempotency key reused
        for another request is a conflict."""
        usage = None
        if self.usage is not None:
            usage = {name: getattr(self.usage, name) for name in RateParams._fields if name != "timestamp"}
            usage["quantity"] = None if self.usage.quantity is None else str(self.usage.quantity)
        canonical = {
            "kind": "entitlement_reserve",
            "user_id": self.user_id,
            "team_id": self.team_id,
            "feature_id": self.feature_id,
            "credits": None if self.credits is None else str(self.credits),
            "usage": usage,
            "ttl_s": self.ttl_s,
        }
        return hashlib.sha256(orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)).digest()


@dataclass(frozen=True)
class Release:
    customer_id: str
    reservation_id: str
    wallet_id: str | None
    user_id: str | None
    team_id: str | None


def reservation_id_for(customer_id: str, key: str) -> str:
    digest = hashlib.sha256(f"{customer_id}\x1fentitlement\x1f{key}".encode()).hexdigest()
    return f"res_{digest[:32]}"


def parse_check(
    body: CheckIn,
    *,
    tenant: str,
    header_key: str | None,
    limits: EventLimits,
    max_amount: Decimal,
    default_ttl_s: int,
    max_ttl_s: int,
    now: datetime,
) -> Check:
    """A decoded body → the check, or RequestError / ForeignCustomer naming the field."""
    if body.customer_id != tenant:
        raise ForeignCustomer("customer_id", "names another tenant than the API key's")
    ttl_s = default_ttl_s
    if body.reserve_ttl_s is not None:
        if not 1 <= body.reserve_ttl_s <= max_ttl_s:
            raise RequestError(
                "reserve_ttl_s", f"must be 1 to {max_ttl_s} seconds (ENTITLEMENT_MAX_RESERVE_TTL_S), got {body.reserve_ttl_s}"
            )
        ttl_s = body.reserve_ttl_s
    if (body.estimate is None) == (body.action is None):
        raise RequestError("estimate", "give an estimate (credits or usage units), or the action about to be made; "
                                       "one of them")
    if body.estimate is not None:
        credits, usage = parse_estimate(body.estimate, limits=limits, max_amount=max_amount, now=now)
    else:
        estimate = estimate_of(body.action)
        try:
            credits, usage = parse_estimate(estimate, limits=limits, max_amount=max_amount, now=now)
        except RequestError as exc:
            raise RequestError(_action_field(body.action, exc.field), exc.reason) from None
    return Check(
        customer_id=tenant,
        user_id=body.user_id,
        team_id=body.team_id,
        feature_id=body.feature_id,
        credits=credits,
        usage=usage,
        reserve=body.reserve,
        ttl_s=ttl_s,
        idempotency_key=idempotency_key(header_key, body.idempotency_key),
    )


def estimate_of(action: ActionIn) -> EstimateIn:
    """The usage estimate of a seed-shaped action, or RequestError naming the field."""
    event_type = ACTION_TYPES.get(action.type.lower())
    if event_type is None:
        raise RequestError("action.type", f"unknown action type {action.type[:40]!r}; one of {', '.join(ACTION_TYPES)} "
                                          "(any case)")
    if action.estimated_tokens is not None and action.estimated_input_tokens is not None:
        raise RequestError("action.estimated_tokens", "give estimated_tokens or estimated_input_tokens, not both")
    if all(getattr(action, name) is None for name in ACTION_UNITS):
        raise RequestError("action", f"an action needs units: one of {', '.join(ACTION_UNITS)}")
    inputs = action.estimated_input_tokens if action.estimated_input_tokens is not None else action.estimated_tokens
    return EstimateIn(event_type=event_type, provider=action.provider, model=action.model,
                      input_tokens=inputs, max_output_tokens=action.estimated_output_tokens,
                      image_count=action.image_count, image_size=action.image_size, quality=action.quality,
                      unit_type=action.unit_type, quantity=action.quantity)


def _action_field(action: ActionIn, field: str) -> str:
    """An estimate's field (`estimate.input_tokens`) as the action named it (`action.estimated_input_tokens`)."""
    name = field.removeprefix("estimate").lstrip(".")
    if not name:
        return "action"
    if name == "input_tokens":
        name = "estimated_input_tokens" if action.estimated_input_tokens is not None else "estimated_tokens"
    elif name == "max_output_tokens":
        name = "estimated_output_tokens"
    return f"action.{name}"


def parse_estimate(
    estimate: EstimateIn, *, limits: EventLimits, max_amount: Decimal, now: datetime
) -> tuple[Decimal | None, RateParams | None]:
    """(credits, None) or (None, the usage to rate at `now`)."""
    given = [name for name in EstimateIn.__struct_fields__ if name != "credits" and getattr(estimate, name) is not None]
    if estimate.credits is not None:
        if given:
            raise RequestError(f"estimate.{given[0]}", "give estimate.credits or a usage estimate, not both")
        return parse_amount(estimate.credits, max_amount, "estimate.credits"), None
    if estimate.event_type is None:
        raise RequestError("estimate", "give estimate.credits, or estimate.event_type with the usage's units")
    if estimate.event_type not in EVENT_TYPES:
        raise RequestError("estimate.event_type",
                           f"unknown event type {estimate.event_type[:40]!r}; one of {', '.join(EVENT_TYPES)}")
    if not any(getattr(estimate, name) is not None for name in UNITS):
        raise RequestError("estimate", f"a usage estimate needs units: one of {', '.join(UNITS)}")
    if estimate.output_tokens is not None and estimate.max_output_tokens is not None:
        raise RequestError("estimate.max_output_tokens", "give output_tokens or max_output_tokens, not both")
    bounds = estimate_bounds(limits)
    try:
        check_units(msgspec.structs.replace(estimate, quantity=None), bounds, ESTIMATE_WORDING,
                    tokens=ESTIMATE_TOKENS, prefix="estimate.")
        quantity = None if estimate.quantity is None else _quantity(estimate.quantity, bounds)
    except UnitsError as exc:
        raise RequestError(exc.field, exc.reason) from None
    output = estimate.output_tokens if estimate.output_tokens is not None else estimate.max_output_tokens
    return None, RateParams.from_units(estimate.event_type, now, estimate, output_tokens=output, quantity=quantity)


def parse_release(body: ReleaseIn, *, tenant: str) -> Release:
    if body.customer_id != tenant:
        raise ForeignCustomer("customer_id", "names another tenant than the API key's")
    if body.wallet_id is not None and (body.user_id is not None or body.team_id is not None):
        raise RequestError("wallet_id", "give wallet_id (as the check answered it) or user_id/team_id, not both")
    if body.wallet_id is None and body.user_id is None:
        raise RequestError("wallet_id", "give wallet_id (as the check answered it), or the user_id (and team_id) the check named")
    return Release(tenant, body.reservation_id, body.wallet_id, body.user_id, body.team_id)


def reserve_command(check: Check, reservation_id: str, wallet_id: str, amount: Decimal, now: datetime) -> dict:
    """The wallet.commands record of a hold (schemas/avro/wallet_command.avsc): its command id
    is the reservation id, which the usage event names to settle it."""
    metadata = {"source": "api", "route": "entitlements/check"}
    if check.feature_id is not None:
        metadata["feature_id"] = check.feature_id
    if check.idempotency_key is not None:
        metadata["idempotency_key"] = check.idempotency_key
    return wallet_command(reservation_id, check.customer_id, wallet_id, "reserve", amount, now,
                          expires_at=now + timedelta(seconds=check.ttl_s), metadata=metadata)


def release_command(customer_id: str, wallet_id: str, reservation_id: str, now: datetime, reason: str) -> dict:
    """A release moves no credits: its amount is 0."""
    return wallet_command("cmd_" + uuid.uuid4().hex, customer_id, wallet_id, "release", ZERO, now,
                          reservation_id=reservation_id, reason=reason, metadata={"source": "api"})


def estimate_bounds(limits: EventLimits) -> UnitBounds:
    """An event's bounds, except that an estimate may name 0 images."""
    return UnitBounds(limits.max_tokens, limits.max_images, limits.max_quantity, quantity_scale=QUANTITY_SCALE)


def _quantity(value: Any, bounds: UnitBounds) -> Decimal:
    """Like an event's quantity: a JSON number or a decimal string, then `check_quantity`."""
    if isinstance(value, bool) or not isinstance(value, (int, Decimal, str)):
        raise RequestError("estimate.quantity", "must be a number or a decimal string")
    if isinstance(value, str):
        if not _DECIMAL.fullmatch(value):
            raise RequestError("estimate.quantity", f"must be a decimal number such as \"2.5\", got {value[:40]!r}")
        value = Decimal(value)
    quantity = Decimal(value)
    check_quantity(quantity, bounds, ESTIMATE_WORDING, "estimate.quantity")
    return quantize(quantity)
