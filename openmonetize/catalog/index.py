"""The catalog's lookup indexes, fed record by record, and `rate_event`, the one entry point of
every process that rates a usage event (the lookup rules: openmonetize/catalog/__init__.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timezone
from decimal import Decimal

from openmonetize.billing import burn_tables, default_burn_table, prices
from openmonetize.billing.burn_tables import BurnTable
from openmonetize.billing.model_names import price_keys
from openmonetize.billing.prices import ProviderPrice
from openmonetize.billing.rating import NoRate, RateParams, rate_fast
from openmonetize.catalog.records import (
    BurnTableRecord,
    PlanRecord,
    PriceRecord,
    Rated,
    Record,
    SubscriptionRecord,
    TenantSettings,
)

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
        self._in_force: dict[tuple, tuple] = {}  # rate_event's lookups, remembered (_rating_span)

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
            self._in_force = {}  # after the indexes changed: see _rating_span

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
        found, table, credit_price = self._rating_span(customer_id, usage.provider, usage.model, usage.timestamp)[2]
        if choose_table is not None:
            table = choose_table(table)  # None: `rate` raises NoRate naming the event's time
        elif table is None:
            raise NoRate(f"no burn table, and no provider price for {usage.provider}/{usage.model} to derive the "
                         "default burn table from: create a burn table (POST /v1/burn-tables)")
        price = found.price if found is not None else None
        return Rated(rate_fast(usage, table, price, credit_price), found, credit_price)

    def rating_inputs(
        self, customer_id: str, provider: str | None, model: str | None, at: datetime
    ) -> tuple[tuple[PriceRecord | None, BurnTable | None, Decimal], datetime, datetime]:
        """What `rate_event` rates an event of `at` with, (price record, burn table in force,
        credit price), and the stretch [since, until) of event times over which it stays the
        same: a reader rating many events (a replay's pass) keeps it for that stretch."""
        since, until, inputs = self._rating_span(customer_id, provider, model, at)
        return inputs, since, until

    def _rating_span(
        self, customer_id: str, provider: str | None, model: str | None, at: datetime
    ) -> tuple[datetime, datetime, tuple[PriceRecord | None, BurnTable | None, Decimal]]:
        """(since, until, (price record, burn table, credit price)): what is in force at `at`,
        remembered per tenant and model for the stretch of time between two versions'
        `effective_from`, over which the choice cannot change. Every `apply` starts a new memory
        after changing the indexes, so a reader fills the memory it took before reading them and
        never keeps a stale answer."""
        remembered = self._in_force
        key = (customer_id, provider, model)
        hit = remembered.get(key)
        if hit is not None and hit[0] <= at < hit[1]:
            return hit
        found = self.price_record_at(customer_id, provider, model, at)
        table = self.burn_table_for(customer_id, at, found.price if found is not None else None)
        inputs = (found, table, self.tenant(customer_id).credit_price_usd)
        changes = [v.effective_from for versions in self._burn_tables.get(customer_id, ()) for v in versions]
        if provider is not None and model is not None:
            changes += [p.effective_from for owner in (customer_id, None) for provider_id, model_id in
                        price_keys(provider, model) for p in self._prices.get((owner, provider_id, model_id), ())]
        if len(remembered) >= _REMEMBERED:
            remembered.clear()
        span = remembered[key] = (max((t for t in changes if t <= at), default=_ALWAYS[0]),
                                  min((t for t in changes if t > at), default=_ALWAYS[1]), inputs)
        return span

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


def _subject(subscription: SubscriptionRecord) -> str:
    return f"user:{subscription.user_id}" if subscription.user_id else f"team:{subscription.team_id}" \
        if subscription.team_id else "customer"
