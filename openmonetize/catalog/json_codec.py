"""Catalog records as the `billing.catalog` topic carries them: JSON objects with a `kind`,
amounts as decimal strings, times RFC 3339; and the key each record is published under."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal

import orjson

from openmonetize.billing import burn_tables
from openmonetize.billing.burn_tables import BurnTable, RateRule, parse_rules
from openmonetize.billing.money import CONTEXT
from openmonetize.billing.prices import ProviderPrice
from openmonetize.catalog.records import (
    PRICE_FIELDS,
    BurnTableRecord,
    PlanRecord,
    PriceRecord,
    Record,
    SubscriptionRecord,
    TenantSettings,
)


def decimal_text(value: Decimal) -> str:
    """A decimal as plain digits without trailing zeros ("2.5", "1000", never "1E+3")."""
    return f"{value.normalize(CONTEXT):f}"


def rules_json(rules: Mapping[str, RateRule]) -> dict:
    """Parsed rules back to the stored and published shape (amounts as strings)."""
    out = {}
    for key, rule in rules.items():
        spec: dict = {"per_unit": decimal_text(rule.per_unit)}
        for name in (*burn_tables.TOKEN_RATES, "image", "unit"):
            if (rate := getattr(rule, name)) is not None:
                spec[name] = decimal_text(rate)
        if rule.images:
            spec["images"] = {size: decimal_text(rate) for size, rate in rule.images.items()}
        out[key] = spec
    return out


def key_of(record: Record) -> str:
    if isinstance(record, TenantSettings):
        return f"tenant:{record.customer_id}"
    if isinstance(record, PlanRecord):
        return f"plan:{record.customer_id}:{record.plan_id}"
    if isinstance(record, SubscriptionRecord):
        return f"subscription:{record.customer_id}:{record.subscription_id}"
    if isinstance(record, BurnTableRecord):
        t = record.table
        return f"burn_table:{t.customer_id}:{t.burn_table_id}:{t.version}"
    p = record.price
    if record.customer_id is None:
        return f"price:{p.provider}:{p.model}:{p.version}"
    return f"price_override:{record.customer_id}:{p.provider}:{p.model}:{p.version}"


def encode(record: Record) -> bytes:
    if isinstance(record, TenantSettings):
        body = {
            "kind": "tenant",
            "customer_id": record.customer_id,
            "credit_price_usd": decimal_text(record.credit_price_usd),
            "routing_order": list(record.routing_order),
            "unfunded_policy": record.unfunded_policy,
            "features": None if record.features is None else list(record.features),
            "disabled_features": list(record.disabled_features),
        }
    elif isinstance(record, PlanRecord):
        body = {
            "kind": "plan", "plan_id": record.plan_id, "customer_id": record.customer_id, "name": record.name,
            "credits": decimal_text(record.credits), "period": record.period, "period_count": record.period_count,
            "rollover": record.rollover, "rollover_cap": _text_or_none(record.rollover_cap),
            "features": None if record.features is None else list(record.features),
            "excluded_features": list(record.excluded_features), "priority": record.priority,
            "created_at": record.created_at.isoformat(),
        }
    elif isinstance(record, SubscriptionRecord):
        body = {
            "kind": "subscription", "subscription_id": record.subscription_id, "customer_id": record.customer_id,
            "plan_id": record.plan_id, "user_id": record.user_id, "team_id": record.team_id,
            "wallet_id": record.wallet_id, "status": record.status, "starts_at": record.starts_at.isoformat(),
            "cancelled_at": None if record.cancelled_at is None else record.cancelled_at.isoformat(),
            "created_at": record.created_at.isoformat(),
        }
    elif isinstance(record, BurnTableRecord):
        t = record.table
        body = {
            "kind": "burn_table",
            "burn_table_id": t.burn_table_id,
            "customer_id": t.customer_id,
            "name": t.name,
            "version": t.version,
            "effective_from": t.effective_from.isoformat(),
            "created_at": record.created_at.isoformat(),
            "table_created_at": record.table_created_at.isoformat(),
            "rules": rules_json(t.rules),
        }
    else:
        p = record.price
        body = {
            "kind": "price",
            "customer_id": record.customer_id,
            "provider": p.provider,
            "model": p.model,
            "version": p.version,
            "effective_from": p.effective_from.isoformat(),
            **{name: _text_or_none(getattr(p, name)) for name in PRICE_FIELDS},
        }
    return orjson.dumps(body)


def decode(value: bytes) -> Record:
    body = orjson.loads(value)
    kind = body.get("kind")
    if kind == "tenant":
        return TenantSettings(
            customer_id=body["customer_id"],
            credit_price_usd=Decimal(body["credit_price_usd"]),
            routing_order=tuple(body["routing_order"]),
            unfunded_policy=body["unfunded_policy"],
            features=None if body.get("features") is None else tuple(body["features"]),
            disabled_features=tuple(body.get("disabled_features") or ()),
        )
    if kind == "plan":
        return PlanRecord(
            body["plan_id"], body["customer_id"], body["name"], Decimal(body["credits"]), body["period"],
            body["period_count"], body["rollover"], _decimal_or_none(body.get("rollover_cap")),
            None if body.get("features") is None else tuple(body["features"]), tuple(body["excluded_features"]),
            body["priority"], _time(body["created_at"]),
        )
    if kind == "subscription":
        return SubscriptionRecord(
            body["subscription_id"], body["customer_id"], body["plan_id"], body.get("user_id"), body.get("team_id"),
            body["wallet_id"], body["status"], _time(body["starts_at"]),
            None if body.get("cancelled_at") is None else _time(body["cancelled_at"]), _time(body["created_at"]),
        )
    if kind == "burn_table":
        table = BurnTable(
            burn_table_id=body["burn_table_id"],
            customer_id=body["customer_id"],
            name=body["name"],
            version=body["version"],
            effective_from=_time(body["effective_from"]),
            rules=parse_rules(body["rules"]),
        )
        return BurnTableRecord(table, _time(body["created_at"]), _time(body["table_created_at"]))
    if kind == "price":
        price = ProviderPrice(
            provider=body["provider"],
            model=body["model"],
            effective_from=_time(body["effective_from"]),
            version=body["version"],
            **{name: _decimal_or_none(body.get(name)) for name in PRICE_FIELDS},
        )
        return PriceRecord(price, body.get("customer_id"))
    raise ValueError(f"unknown catalog record kind {kind!r}")


def _text_or_none(value: Decimal | None) -> str | None:
    return None if value is None else decimal_text(value)


def _decimal_or_none(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def _time(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError(f"time without a timezone: {text!r}")
    return value
