"""The billing catalog: tenant settings, burn tables and provider prices, as every process sees them.

Postgres is the source of truth (migration 0003); every write is also published, as JSON, to
the compacted `billing.catalog` topic, and each API and worker process keeps the whole catalog
in memory (`Catalog`, on a `CompactedView`), so a new version is in force everywhere within a
second, without a restart, and rating never costs a database round trip.

Records and their keys (latest value per key survives compaction; versions are immutable, so
each version has a key of its own):

    tenant:{customer_id}                                          TenantSettings
    burn_table:{customer_id}:{burn_table_id}:{version}            BurnTableRecord
    price:{provider}:{model}:{version}                            PriceRecord (dataset snapshot)
    price_override:{customer_id}:{provider}:{model}:{version}     PriceRecord (a tenant's override)
    plan:{customer_id}:{plan_id}                                  PlanRecord (plans are not edited)
    subscription:{customer_id}:{subscription_id}                  SubscriptionRecord (its status changes)

Values are JSON objects with a `kind`; amounts are decimal strings, times RFC 3339.

Lookups (`rate_event` puts them together, for every process that rates):
- a tenant with several burn tables is rated with the NEWEST-CREATED table that has a version
  in force at the event's time (creating a table switches the tenant to it from its
  `effective_from`; older tables still rate the time before);
- before the tenant's first version, that first version: a table created now rates the events
  reported late, up to the accepted window (35 days), instead of parking them as `no_rate`;
- a tenant with no burn table at all is rated by the default one derived from the provider
  price (openmonetize/billing/default_burn_table.py), so a new tenant's first event is charged;
- a price is the tenant's override in force at that time, else the dataset snapshot's; before
  a group's first version, that first version (`prices.in_force`).

A tenant is known (`knows`) once its settings are published: creating a tenant publishes them
(`openmonetize admin customers create`; `catalog sync` publishes every tenant's).

Feature gating (the entitlement check) answers from here too: a tenant's `disabled_features`
and, for a user or team with active subscriptions, the features their plans include.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal

import orjson
from confluent_kafka import Producer

from openmonetize.billing import burn_tables, default_burn_table, prices
from openmonetize.billing.burn_tables import BurnTable, RateRule, parse_rules
from openmonetize.billing.model_names import price_keys
from openmonetize.billing.money import CONTEXT
from openmonetize.billing.prices import ProviderPrice
from openmonetize.billing.rating import NoRate, RateParams, RateResult, rate_fast
from openmonetize.compacted_view import CompactedView
from openmonetize.settings import Settings
from schemas.topics import topics

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


@dataclass(frozen=True)
class Rated:
    """An event's rating, with the price record and the credit price that went into it."""

    result: RateResult
    price: PriceRecord | None
    credit_price_usd: Decimal


# --- the JSON codec ------------------------------------------------------------------------
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


def _subject(subscription: SubscriptionRecord) -> str:
    return f"user:{subscription.user_id}" if subscription.user_id else f"team:{subscription.team_id}" \
        if subscription.team_id else "customer"


# --- writing -------------------------------------------------------------------------------
class CatalogPublishError(RuntimeError):
    """Kafka did not acknowledge every record in time."""


class CatalogPublisher:
    """Publishes catalog records and waits for Kafka's acknowledgement (acks=all, idempotent)."""

    def __init__(self, settings: Settings, timeout_s: float | None = None):
        self.topic = topics(settings).billing_catalog.name
        self.timeout_s = timeout_s if timeout_s is not None else settings.kafka_producer_timeout_ms / 1000
        self._producer = Producer({
            "bootstrap.servers": settings.kafka_bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 1,
            "message.timeout.ms": int(self.timeout_s * 1000),
        })

    def publish(self, records: Iterable[Record]) -> int:
        """Publish the records; return how many once all are acknowledged, else raise."""
        errors: list = []
        done = [0]

        def delivered(err, _msg) -> None:
            done[0] += 1
            if err is not None:
                errors.append(err)

        count = 0
        for record in records:
            self._produce(key_of(record).encode(), encode(record), delivered)
            count += 1
        deadline = time.monotonic() + self.timeout_s + 1
        while done[0] < count:
            if time.monotonic() > deadline:
                raise CatalogPublishError(f"{count - done[0]} of {count} catalog records not acknowledged in time")
            self._producer.poll(0.05)  # another thread's poll may serve our callbacks: we only count them
        if errors:
            raise CatalogPublishError(f"{len(errors)} of {count} catalog records not delivered: {errors[0]}")
        return count

    def _produce(self, key: bytes, value: bytes, on_delivery) -> None:
        while True:
            try:
                self._producer.produce(self.topic, value, key, on_delivery=on_delivery)
                return
            except BufferError:  # local queue full (a large sync): let deliveries drain it
                self._producer.poll(0.1)

    def close(self) -> None:
        self._producer.flush(self.timeout_s)


# --- reading -------------------------------------------------------------------------------
_ALWAYS = (datetime.min.replace(tzinfo=timezone.utc), datetime.max.replace(tzinfo=timezone.utc))
_REMEMBERED = 65_536  # rating inputs remembered (tenant x model) before the memory starts again
_PriceGroup = tuple[str | None, str, str]  # (customer_id or None for the dataset, provider, model)
TableChoice = Callable[[BurnTable | None], BurnTable | None]  # the table in force → the one to rate with


class CatalogIndex:
    """The catalog's lookup indexes, fed record by record (`apply`); pure, no Kafka.

    One writer (the view's thread) and many readers: the writer replaces each index entry with
    a new immutable tuple, so lookups take no lock and always see a consistent group.
    """

    def __init__(self, default_markup: Decimal = default_burn_table.DEFAULT_MARKUP) -> None:
        self.default_markup = default_markup  # of the default burn table (DEFAULT_BURN_MARKUP)
        self._tenants: dict[str, TenantSettings] = {}
        self._groups: dict[str, tuple[str, object]] = {}  # key → (kind, group) to undo it on a tombstone
        self._burn_records: dict[str, dict[str, BurnTableRecord]] = {}  # customer → key → record
        self._burn_tables: dict[str, tuple[tuple[BurnTable, ...], ...]] = {}  # customer → tables, newest first
        self._price_records: dict[_PriceGroup, dict[str, ProviderPrice]] = {}
        self._prices: dict[_PriceGroup, tuple[ProviderPrice, ...]] = {}
        self._plans: dict[tuple[str, str], PlanRecord] = {}  # (customer, plan_id) → plan
        self._subscriptions: dict[str, SubscriptionRecord] = {}  # key → subscription
        self._by_subject: dict[tuple[str, str], dict[str, SubscriptionRecord]] = {}  # (customer, user:/team: id) → key → it
        self._subscribed: dict[tuple[str, str], tuple[str, ...]] = {}  # (customer, user:/team: id) → active plan ids
        self._listing = threading.Lock()
        self._in_force: dict[tuple, tuple] = {}  # rate_event's lookups, remembered (_rating_inputs)

    def apply(self, key: str, record: Record | None) -> None:
        """A record published under `key`, or None (a tombstone) to forget the key."""
        with self._listing:
            if record is None:
                kind, group = self._groups.pop(key, (None, None))
            elif isinstance(record, TenantSettings):
                kind, group = "tenant", record.customer_id
            elif isinstance(record, BurnTableRecord):
                kind, group = "burn_table", record.table.customer_id
            elif isinstance(record, PlanRecord):
                kind, group = "plan", (record.customer_id, record.plan_id)
            elif isinstance(record, SubscriptionRecord):
                kind, group = "subscription", record.customer_id
            else:
                kind, group = "price", (record.customer_id, record.price.provider, record.price.model)
            if kind is None:
                return
            if record is not None:
                self._groups[key] = (kind, group)
            if kind == "tenant":
                self._apply_tenant(group, record)
            elif kind == "burn_table":
                self._apply_burn_table(group, key, record)
            elif kind == "plan":
                self._apply_plan(group, record)
            elif kind == "subscription":
                self._apply_subscription(group, key, record)
            else:
                self._apply_price(group, key, record)
            self._in_force = {}  # after the indexes changed: see _rating_inputs

    def _apply_tenant(self, customer_id, record) -> None:
        if record is None:
            self._tenants.pop(customer_id, None)
        else:
            self._tenants[customer_id] = record

    def _apply_plan(self, group, record) -> None:
        if record is None:
            self._plans.pop(group, None)
        else:
            self._plans[group] = record

    def _apply_subscription(self, customer_id, key, record) -> None:
        before = self._subscriptions.pop(key, None)
        if before is not None:
            self._by_subject.get((customer_id, _subject(before)), {}).pop(key, None)
        if record is not None:
            self._subscriptions[key] = record
            self._by_subject.setdefault((customer_id, _subject(record)), {})[key] = record
        for subject in {_subject(s) for s in (before, record) if s is not None}:
            group = (customer_id, subject)
            active = tuple(sorted(s.plan_id for s in self._by_subject.get(group, {}).values() if s.status == "active"))
            if active:
                self._subscribed[group] = active
            else:
                self._subscribed.pop(group, None)

    def _apply_burn_table(self, customer_id, key, record) -> None:
        records = self._burn_records.setdefault(customer_id, {})
        if record is None:
            records.pop(key, None)
        else:
            records[key] = record
        by_table: dict[str, list[BurnTableRecord]] = {}
        for item in records.values():
            by_table.setdefault(item.table.burn_table_id, []).append(item)
        ordered = sorted(by_table.values(), key=lambda v: (v[0].table_created_at, v[0].table.burn_table_id), reverse=True)
        self._burn_tables[customer_id] = tuple(tuple(item.table for item in versions) for versions in ordered)

    def _apply_price(self, group, key, record) -> None:
        records = self._price_records.setdefault(group, {})
        if record is None:
            records.pop(key, None)
        else:
            records[key] = record.price
        # Newest first, so that prices.in_force (strictly later wins) takes the latest of equal dates.
        self._prices[group] = tuple(
            sorted(records.values(), key=lambda p: (p.effective_from, len(p.version), p.version), reverse=True)
        )

    # --- lookups (what the workers call per event) --------------------------------------------
    def tenant(self, customer_id: str) -> TenantSettings:
        return self._tenants.get(customer_id) or TenantSettings(customer_id)

    def plan(self, customer_id: str, plan_id: str) -> PlanRecord | None:
        return self._plans.get((customer_id, plan_id))

    def active_plans(self, customer_id: str, user_id: str | None, team_id: str | None) -> list[PlanRecord]:
        """The plans of the user's and the team's active subscriptions."""
        found = []
        for subject in (f"user:{user_id}" if user_id else None, f"team:{team_id}" if team_id else None):
            for plan_id in self._subscribed.get((customer_id, subject), ()) if subject else ():
                plan = self._plans.get((customer_id, plan_id))
                if plan is not None:
                    found.append(plan)
        return found

    def plans_including(self, customer_id: str, feature_id: str) -> list[str]:
        """The ids of the tenant's plans that include a feature (an upgrade hint)."""
        return sorted(p.plan_id for (c, _), p in list(self._plans.items()) if c == customer_id and p.includes(feature_id))

    def knows(self, customer_id: str) -> bool:
        """A tenant is known once its settings (published when it is created) or a burn table
        of its own were published."""
        return customer_id in self._tenants or customer_id in self._burn_tables

    def burn_table_at(self, customer_id: str, at: datetime) -> BurnTable | None:
        """The tenant's own burn-table version in force at `at` (before its first version, the
        first), or None when the tenant has none."""
        tables = self._burn_tables.get(customer_id, ())
        for versions in tables:
            found = burn_tables.in_force(versions, at)
            if found is not None:
                return found
        # Before every version: the first one (the oldest-created table's on equal dates).
        return min((v for versions in reversed(tables) for v in versions), key=lambda v: v.effective_from, default=None)

    def burn_table_for(self, customer_id: str, at: datetime, price: ProviderPrice | None) -> BurnTable | None:
        """The tenant's burn table in force at `at`, else the default derived from `price` (the
        provider price in force then); None when there is neither."""
        table = self.burn_table_at(customer_id, at)
        if table is not None or price is None:
            return table
        return default_burn_table.derived(customer_id, price, self.tenant(customer_id).credit_price_usd,
                                          self.default_markup)

    def rate_event(self, customer_id: str, usage: RateParams, choose_table: TableChoice | None = None) -> Rated:
        """Rate a usage event with what is in force at its timestamp: the one entry point of every
        process that rates (the usage agent, the rating and entitlement routes, replays, the
        dashboard). Raises NoRate.

        `choose_table`, when given, picks the burn table to rate with from the one in force (None
        when there is none): a replay's version V of it, the dashboard's proposed rules. The
        price and the credit price are still the ones in force."""
        found, table, credit_price = self._rating_inputs(customer_id, usage.provider, usage.model, usage.timestamp)
        if choose_table is not None:
            table = choose_table(table)  # None: `rate` raises NoRate naming the event's time
        elif table is None:
            raise NoRate(f"no burn table, and no provider price for {usage.provider}/{usage.model} to derive the "
                         "default burn table from: create a burn table (POST /v1/burn-tables)")
        price = found.price if found is not None else None
        return Rated(rate_fast(usage, table, price, credit_price), found, credit_price)

    def _rating_inputs(
        self, customer_id: str, provider: str | None, model: str | None, at: datetime
    ) -> tuple[PriceRecord | None, BurnTable | None, Decimal]:
        """The price record, burn table and credit price in force at `at`, remembered per tenant
        and model for the stretch of time between two versions' `effective_from`, over which the
        choice cannot change. Every `apply` starts a new memory after changing the indexes, so a
        reader fills the memory it took before reading them and never keeps a stale answer."""
        remembered = self._in_force
        key = (customer_id, provider, model)
        hit = remembered.get(key)
        if hit is not None and hit[0] <= at < hit[1]:
            return hit[2]
        found = self.price_record_at(customer_id, provider, model, at)
        table = self.burn_table_for(customer_id, at, found.price if found is not None else None)
        inputs = (found, table, self.tenant(customer_id).credit_price_usd)
        changes = [v.effective_from for versions in self._burn_tables.get(customer_id, ()) for v in versions]
        if provider is not None and model is not None:
            changes += [p.effective_from for owner in (customer_id, None) for provider_id, model_id in
                        price_keys(provider, model) for p in self._prices.get((owner, provider_id, model_id), ())]
        if len(remembered) >= _REMEMBERED:
            remembered.clear()
        remembered[key] = (max((t for t in changes if t <= at), default=_ALWAYS[0]),
                           min((t for t in changes if t > at), default=_ALWAYS[1]), inputs)
        return inputs

    def price_at(self, customer_id: str, provider: str | None, model: str | None, at: datetime) -> ProviderPrice | None:
        found = self.price_record_at(customer_id, provider, model, at)
        return found.price if found is not None else None

    def price_record_at(self, customer_id: str, provider: str | None, model: str | None, at: datetime) -> PriceRecord | None:
        """The price in force with where it came from: the tenant's override, else the dataset;
        each under the names as sent, then as the dataset spells them (`OPENAI` → openai,
        `claude-3.5-sonnet` → claude-3-5-sonnet: `model_names.price_keys`)."""
        if provider is None or model is None:
            return None
        keys = price_keys(provider, model)
        for owner in (customer_id, None):
            for provider_id, model_id in keys:
                found = prices.in_force(self._prices.get((owner, provider_id, model_id), ()), at)
                if found is not None:
                    return PriceRecord(found, owner)
        return None

    def prices_in_force(
        self, customer_id: str, at: datetime, provider: str | None = None, model: str | None = None
    ) -> list[PriceRecord]:
        """Every model's price in force at `at` for a tenant (overrides applied), sorted."""
        with self._listing:
            models = {
                (p, m)
                for owner, p, m in self._prices
                if owner in (None, customer_id) and provider in (None, p) and model in (None, m)
            }
        found = (self.price_record_at(customer_id, p, m, at) for p, m in sorted(models))
        return [record for record in found if record is not None]


class Catalog(CatalogIndex):
    """The whole catalog in memory, kept current from the billing.catalog topic.

    `start()`, then `wait_until_current()` before serving: lookups answer from what has been
    read so far.
    """

    def __init__(self, settings: Settings):
        super().__init__(settings.default_burn_markup)
        self._view = CompactedView(
            settings.kafka_bootstrap, topics(settings).billing_catalog.name, decode, on_update=self.apply
        )

    def start(self) -> Catalog:
        self._view.start()
        return self

    def wait_until_current(self, timeout_s: float = 30.0) -> bool:
        return self._view.wait_until_current(timeout_s)

    @property
    def decode_errors(self) -> int:
        return self._view.decode_errors

    def close(self) -> None:
        self._view.close()
