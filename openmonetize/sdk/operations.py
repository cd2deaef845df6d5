"""The API's operations as the SDK calls them, without I/O: each method of a resource builds an
`Operation` (request, whether it is repeatable, how to read the answer) and hands it to its
client, which sends it with retries. The sync client returns the result, the async client an
awaitable of it; so the resources are written once for both.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from openmonetize.sdk import models
from openmonetize.sdk.errors import EventRejected, error_from

T = TypeVar("T")


@dataclass(frozen=True)
class Operation(Generic[T]):
    method: str
    path: str
    read: Callable[[httpx.Response], T]  # the final answer → the result, or raises the typed error
    body: Any = None
    params: Mapping[str, str] = field(default_factory=dict)
    idempotency_key: str | None = None  # sent as Idempotency-Key on every try
    repeatable: bool = True  # safe to send again after the API may have acted on it


def new_idempotency_key() -> str:
    return f"sdk-{uuid.uuid4().hex}"


def decoded(type_: type[T]) -> Callable[[httpx.Response], T]:
    def read(response: httpx.Response) -> T:
        if not response.is_success:
            raise error_from(response)
        return msgspec.json.decode(response.content, type=type_)

    return read


def money(value: Decimal | int | str, name: str) -> str:
    """An amount as the decimal string the API reads exactly; a float is refused (it is not exact)."""
    if isinstance(value, bool) or not isinstance(value, (Decimal, int, str)):
        raise TypeError(f"{name} must be a Decimal, an int or a decimal string, not {type(value).__name__}")
    return str(value)


def _rates(rules: Mapping[str, Mapping[str, Any]]) -> dict:
    out: dict = {}
    for key, rule in rules.items():
        out[key] = {}
        for name, rate in rule.items():
            if isinstance(rate, Mapping):
                out[key][name] = {size: money(r, f"rules.{key}.{name}.{size}") for size, r in rate.items()}
            else:
                out[key][name] = money(rate, f"rules.{key}.{name}")
    return out


def _without_none(fields: Mapping[str, Any]) -> dict:
    return {name: value for name, value in fields.items() if value is not None}


def _wait(wait: bool) -> dict[str, str]:
    return {"wait": "true"} if wait else {}


class Resource:
    def __init__(self, client):
        self._client = client

    @property
    def _customer_id(self) -> str:
        return self._client.customer_id


class Events(Resource):
    def track(
        self, user_id: str, event_type: str, feature_id: str, *, provider: str | None = None, model: str | None = None,
        input_tokens: int | None = None, output_tokens: int | None = None, cached_input_tokens: int | None = None,
        image_count: int | None = None, image_size: str | None = None, quality: str | None = None,
        unit_type: str | None = None, quantity: Decimal | int | str | None = None, team_id: str | None = None,
        reservation_id: str | None = None, metadata: Mapping[str, str] | None = None,
        timestamp: datetime | None = None, event_id: str | None = None,
    ) -> models.TrackResult:
        """Report one usage event (`POST /v1/events/ingest`). `event_id` (default: generated) and
        `timestamp` (default: now) are fixed once, so a retry is the same event, charged once.
        Raises EventRejected naming the field when the API refuses the event."""
        event = _without_none(dict(
            event_id=event_id or f"evt_{uuid.uuid4().hex}", user_id=user_id, team_id=team_id, event_type=event_type,
            feature_id=feature_id, provider=provider, model=model, input_tokens=input_tokens,
            output_tokens=output_tokens, cached_input_tokens=cached_input_tokens, image_count=image_count,
            image_size=image_size, quality=quality, unit_type=unit_type,
            quantity=None if quantity is None else money(quantity, "quantity"), reservation_id=reservation_id,
            metadata=dict(metadata) if metadata is not None else None,
            timestamp=timestamp or datetime.now(timezone.utc),
        ))

        def read(response: httpx.Response) -> models.TrackResult:
            result = _ingested(response, [event["event_id"]])
            if result.rejected:
                first = result.rejected[0]
                raise EventRejected(response.status_code, "event_rejected", first.reason, first.field,
                                    msgspec.json.decode(response.content), response.headers)
            return result

        return self._client._run(Operation("POST", "/v1/events/ingest", read, {"events": [event]}))

    def track_many(self, events: Iterable[Mapping[str, Any]]) -> models.TrackResult:
        """Report a batch of events (dicts with the event contract's fields). Events without
        `event_id` or `timestamp` get one, once. Per-event refusals are in `rejected`, not raised."""
        batch = []
        for fields in events:
            event = dict(fields)
            event.setdefault("event_id", f"evt_{uuid.uuid4().hex}")
            event.setdefault("timestamp", datetime.now(timezone.utc))
            if event.get("quantity") is not None:
                event["quantity"] = money(event["quantity"], "quantity")
            batch.append(event)
        ids = [e["event_id"] for e in batch]
        return self._client._run(Operation("POST", "/v1/events/ingest", lambda r: _ingested(r, ids), {"events": batch}))


def _ingested(response: httpx.Response, event_ids: list[str]) -> models.TrackResult:
    """202/207, or the 400 that lists every event as rejected: the result; anything else raises."""
    body = msgspec.json.decode(response.content) if response.content else None
    if response.status_code in (202, 207) or (response.status_code == 400 and isinstance(body, dict) and "rejected" in body
                                              and "error" not in body):
        result = msgspec.convert(body, models.TrackResult)
        return msgspec.structs.replace(result, event_ids=event_ids)
    raise error_from(response)


class Entitlements(Resource):
    def check(
        self, user_id: str, *, credits: Decimal | int | str | None = None, event_type: str | None = None,
        provider: str | None = None, model: str | None = None, input_tokens: int | None = None,
        output_tokens: int | None = None, max_output_tokens: int | None = None, cached_input_tokens: int | None = None,
        image_count: int | None = None, image_size: str | None = None, quality: str | None = None,
        unit_type: str | None = None, quantity: Decimal | int | str | None = None, feature_id: str | None = None,
        team_id: str | None = None, reserve: bool = False, reserve_ttl_s: int | None = None, wait: bool = False,
        idempotency_key: str | None = None,
    ) -> models.EntitlementDecision:
        """May `user_id` make a call that costs `credits`, or this usage (event_type defaults to
        TOKEN_USAGE), now? With `reserve=True` an allowed check holds the credits; its
        Idempotency-Key (generated unless given) makes a retry name the same hold."""
        if credits is not None:
            estimate = {"credits": money(credits, "credits")}
        else:
            estimate = _without_none(dict(
                event_type=event_type or "TOKEN_USAGE", provider=provider, model=model, input_tokens=input_tokens,
                output_tokens=output_tokens, max_output_tokens=max_output_tokens,
                cached_input_tokens=cached_input_tokens, image_count=image_count, image_size=image_size,
                quality=quality, unit_type=unit_type, quantity=None if quantity is None else money(quantity, "quantity"),
            ))
        body = _without_none(dict(
            customer_id=self._customer_id, user_id=user_id, team_id=team_id, feature_id=feature_id, estimate=estimate,
            reserve=reserve or None, reserve_ttl_s=reserve_ttl_s,
        ))
        key = (idempotency_key or new_idempotency_key()) if reserve else None
        return self._client._run(Operation("POST", "/v1/entitlements/check", decoded(models.EntitlementDecision), body,
                                           _wait(wait), key))

    def release(self, reservation_id: str, *, wallet_id: str | None = None, user_id: str | None = None,
                team_id: str | None = None, wait: bool = False) -> models.Release:
        """Drop a hold before its expiry (a no-op if it was settled or released: safe to repeat)."""
        body = _without_none(dict(customer_id=self._customer_id, reservation_id=reservation_id, wallet_id=wallet_id,
                                  user_id=user_id, team_id=team_id))
        return self._client._run(Operation("POST", "/v1/entitlements/release", decoded(models.Release), body, _wait(wait)))


class Rating(Resource):
    def calculate(
        self, event_type: str | None = None, *, provider: str | None = None, model: str | None = None,
        input_tokens: int | None = None, output_tokens: int | None = None, cached_input_tokens: int | None = None,
        image_count: int | None = None, image_size: str | None = None, quality: str | None = None,
        unit_type: str | None = None, quantity: Decimal | int | str | None = None, timestamp: datetime | None = None,
    ) -> models.Rating:
        """What one usage event costs (credits, USD, margin) with the catalog in force at `timestamp` (default now);
        without `event_type` the API infers it from the units, as the seed's `rating.calculate` expects."""
        body = _without_none(dict(
            event_type=event_type, provider=provider, model=model, input_tokens=input_tokens,
            output_tokens=output_tokens, cached_input_tokens=cached_input_tokens, image_count=image_count,
            image_size=image_size, quality=quality, unit_type=unit_type,
            quantity=None if quantity is None else money(quantity, "quantity"), timestamp=timestamp,
        ))
        return self._client._run(Operation("POST", "/v1/rating/calculate", decoded(models.Rating), body))


class Credits(Resource):
    def purchase(self, amount: Decimal | int | str, *, user_id: str | None = None, team_id: str | None = None,
                 expires_at: datetime | None = None, priority: int | None = None, reason: str | None = None,
                 wait: bool = False, idempotency_key: str | None = None) -> models.CreditCommand:
        """Buy credits for a user's, a team's or (neither) the customer's own wallet."""
        return self._command("purchase", amount, user_id, team_id, wait, idempotency_key,
                             expires_at=expires_at, priority=priority, reason=reason)

    def grant(self, amount: Decimal | int | str, *, user_id: str | None = None, team_id: str | None = None,
              expires_at: datetime | None = None, priority: int | None = None, reason: str | None = None,
              wait: bool = False, idempotency_key: str | None = None) -> models.CreditCommand:
        """Grant promotional credits, usually with `expires_at`."""
        return self._command("grant", amount, user_id, team_id, wait, idempotency_key,
                             expires_at=expires_at, priority=priority, reason=reason)

    def consume(self, amount: Decimal | int | str, *, user_id: str | None = None, team_id: str | None = None,
                reason: str | None = None, wait: bool = False, idempotency_key: str | None = None) -> models.CreditCommand:
        """Debit credits by hand; the wallet agent refuses it beyond what is available."""
        return self._command("consume", amount, user_id, team_id, wait, idempotency_key, reason=reason)

    def balance(self, *, user_id: str | None = None, team_id: str | None = None) -> models.Credits:
        """A wallet's balance and lots (the customer's own with neither user_id nor team_id)."""
        params = _without_none(dict(user_id=user_id, team_id=team_id))
        path = f"/v1/customers/{quote(self._customer_id, safe='')}/credits"
        return self._client._run(Operation("GET", path, decoded(models.Credits), params=params))

    def _command(self, kind: str, amount, user_id, team_id, wait: bool, idempotency_key: str | None,
                 **extra) -> models.CreditCommand:
        body = _without_none(dict(customer_id=self._customer_id, amount=money(amount, "amount"), user_id=user_id,
                                  team_id=team_id, **extra))
        key = idempotency_key or new_idempotency_key()
        return self._client._run(Operation("POST", f"/v1/credits/{kind}", decoded(models.CreditCommand), body,
                                           _wait(wait), key))


class _BurnTableList(msgspec.Struct, frozen=True):
    burn_tables: list[models.BurnTable]


class BurnTables(Resource):
    def create(self, name: str, rules: Mapping[str, Mapping[str, Any]], *,
               effective_from: datetime | None = None) -> models.BurnTable:
        """A new burn table (version 1). Rates are Decimals, ints or decimal strings. Not
        repeatable (the route takes no idempotency key): retried only when the API surely did nothing."""
        body = _without_none(dict(name=name, rules=_rates(rules), effective_from=effective_from))
        return self._client._run(Operation("POST", "/v1/burn-tables", decoded(models.BurnTable), body, repeatable=False))

    def add_version(self, burn_table_id: str, rules: Mapping[str, Mapping[str, Any]], *,
                    effective_from: datetime | None = None) -> models.BurnTable:
        """Version max+1 of a table; `effective_from` (default now) may be in the past to rebill."""
        body = _without_none(dict(rules=_rates(rules), effective_from=effective_from))
        path = f"/v1/burn-tables/{quote(burn_table_id, safe='')}/versions"
        return self._client._run(Operation("POST", path, decoded(models.BurnTable), body, repeatable=False))

    def list(self) -> list[models.BurnTable]:
        """The tenant's tables, latest version of each, newest first."""
        def read(response: httpx.Response) -> list[models.BurnTable]:
            return decoded(_BurnTableList)(response).burn_tables

        return self._client._run(Operation("GET", "/v1/burn-tables", read))


class _PlanList(msgspec.Struct, frozen=True):
    plans: list[models.Plan]


class Plans(Resource):
    def create(self, name: str, credits: Decimal | int | str, *, period: str = "month", period_count: int = 1,
               rollover: str = "none", rollover_cap: Decimal | int | str | None = None,
               features: list[str] | None = None, excluded_features: list[str] | None = None, priority: int = 0,
               idempotency_key: str | None = None) -> models.Plan:
        """A plan: `credits` every `period_count` x `period` (day, week, month, year) to each
        subscriber, rollover none, full or capped (at `rollover_cap`)."""
        body = _without_none(dict(
            name=name, credits=money(credits, "credits"), period=period, period_count=period_count, rollover=rollover,
            rollover_cap=money(rollover_cap, "rollover_cap") if rollover_cap is not None else None,
            features=features, excluded_features=excluded_features, priority=priority))
        return self._client._run(Operation("POST", "/v1/plans", decoded(models.Plan), body,
                                           idempotency_key=idempotency_key or new_idempotency_key()))

    def list(self) -> list[models.Plan]:
        def read(response: httpx.Response) -> list[models.Plan]:
            return decoded(_PlanList)(response).plans

        return self._client._run(Operation("GET", "/v1/plans", read))

    def get(self, plan_id: str) -> models.Plan:
        return self._client._run(Operation("GET", f"/v1/plans/{quote(plan_id, safe='')}", decoded(models.Plan)))


class Subscriptions(Resource):
    def create(self, plan_id: str, *, user_id: str | None = None, team_id: str | None = None,
               starts_at: datetime | None = None, idempotency_key: str | None = None) -> models.Subscription:
        """Subscribe a user or a team (one of them) to a plan; its started periods are granted at once."""
        body = _without_none(dict(plan_id=plan_id, user_id=user_id, team_id=team_id, starts_at=starts_at))
        return self._client._run(Operation("POST", "/v1/subscriptions", decoded(models.Subscription), body,
                                           idempotency_key=idempotency_key or new_idempotency_key()))

    def get(self, subscription_id: str) -> models.Subscription:
        path = f"/v1/subscriptions/{quote(subscription_id, safe='')}"
        return self._client._run(Operation("GET", path, decoded(models.Subscription)))

    def cancel(self, subscription_id: str) -> models.Subscription:
        """No further grant; cancelling twice changes nothing."""
        path = f"/v1/subscriptions/{quote(subscription_id, safe='')}/cancel"
        return self._client._run(Operation("POST", path, decoded(models.Subscription),
                                           idempotency_key=new_idempotency_key()))
