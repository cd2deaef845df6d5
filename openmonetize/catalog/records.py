"""The records of the billing catalog: tenant settings, burn-table versions, provider prices,
plans and subscriptions, as published on `billing.catalog` (keys in openmonetize/catalog/__init__.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

from openmonetize.billing.burn_tables import BurnTable
from openmonetize.billing.prices import ProviderPrice
from openmonetize.billing.rating import RateResult

ROUTING_LEVELS = ("user", "team", "customer")
UNFUNDED_POLICIES = ("allow_overdraft", "reject")
PRICE_FIELDS = ("input_mtok", "output_mtok", "cache_read_mtok", "per_image", "per_unit")


@dataclass(frozen=True)
class TenantSettings:
    """What rating and wallet routing need to know about a tenant; the defaults apply until set."""

    customer_id: str
    credit_price_usd: Decimal = Decimal("0.01")
    routing_order: tuple[str, ...] = ROUTING_LEVELS
    unfunded_policy: str = "allow_overdraft"
    features: tuple[str, ...] | None = None  # the tenant's declared feature ids; None: not declared
    disabled_features: tuple[str, ...] = ()  # switched off for the whole tenant


@dataclass(frozen=True)
class BurnTableRecord:
    """One version of a burn table, with when that version and the table (version 1) were created."""

    table: BurnTable
    created_at: datetime
    table_created_at: datetime


@dataclass(frozen=True)
class PriceRecord:
    """A provider price version: the dataset snapshot's (customer_id None) or a tenant's override."""

    price: ProviderPrice
    customer_id: str | None = None

    @property
    def source(self) -> str:
        return "dataset" if self.customer_id is None else "override"


@dataclass(frozen=True)
class PlanRecord:
    """A plan: `credits` per `period_count` x `period` to each subscriber (openmonetize/plans/)."""

    plan_id: str
    customer_id: str
    name: str
    credits: Decimal
    period: str
    period_count: int
    rollover: str
    rollover_cap: Decimal | None
    features: tuple[str, ...] | None  # None: every feature
    excluded_features: tuple[str, ...]
    priority: int
    created_at: datetime

    def includes(self, feature_id: str) -> bool:
        return (self.features is None or feature_id in self.features) and feature_id not in self.excluded_features


@dataclass(frozen=True)
class SubscriptionRecord:
    """A user's or team's subscription to a plan; the scheduler's progress is not published."""

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


Record = TenantSettings | BurnTableRecord | PriceRecord | PlanRecord | SubscriptionRecord


class Rated(NamedTuple):
    """An event's rating, with the price record and the credit price that went into it (a named
    tuple: one per event rated)."""

    result: RateResult
    price: PriceRecord | None
    credit_price_usd: Decimal
