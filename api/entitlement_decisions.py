"""The entitlement decision without HTTP: may this user make a call that costs about this much,
answered from the catalog and the wallet balances in memory. The route (api/routes/entitlements.py)
and the AI proxy (api/proxy/enforcement.py) both decide with these: `new_answer`, then `gate`
(features), `price` (the estimate in credits) and `assess` (the wallet's available)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

import msgspec

from api.entitlement_requests import Check
from api.errors import ApiError
from api.holds import Holds
from openmonetize import wallet_ids
from openmonetize.billing.rating import NoRate
from openmonetize.catalog.json_codec import decimal_text
from openmonetize.catalog.view import Catalog
from openmonetize.wallet_balances import Balance, WalletBalances


class CheckOut(msgspec.Struct, omit_defaults=True):
    allowed: bool
    wallet_id: str  # the wallet the usage event will be charged to
    required: str  # credits the estimate rates to
    # The wallet as this check saw it, before its own hold: `available` is the view's, less the
    # holds this process wrote that the view does not show yet.
    available: str
    balance: str
    reserved: str
    policy: str  # the tenant's unfunded policy: allow_overdraft (a call made anyway is charged) or reject
    estimated_credits: str  # = required (the seed's name)
    # null when allowed; else insufficient_credits, contended, feature_disabled or feature_not_in_plan
    reason: str | None
    # what the caller can do about a denial: top_up (with the credits missing), retry, upgrade (with
    # the plans that include the feature), contact_admin (a feature switched off for the tenant)
    actions: list[dict]
    reservation_id: str | None = None  # `"reserve": true` and allowed: name it in the usage event
    reservation_expires_at: datetime | None = None
    reservation_status: str | None = None  # accepted (Kafka has it), applied (`?wait=true`), pending (the wait timed out)
    feature_id: str | None = None
    rule_key: str | None = None  # a usage estimate: the burn-table rule and version that rated it
    burn_table_id: str | None = None
    burn_table_version: int | None = None


def new_answer(catalog: Catalog, customer_id: str, check_: Check) -> CheckOut:
    """A check's answer before it is decided: denied, nothing known yet."""
    policy = catalog.tenant(customer_id).unfunded_policy
    return CheckOut(False, "", "0", "0", "0", "0", policy, "0", None, [], feature_id=check_.feature_id)


def gate(catalog: Catalog, customer_id: str, check_: Check, out: CheckOut) -> bool:
    """Feature gating, from the catalog in memory: False (and `out` denied with its reason and
    actions) when the check names a feature the tenant switched off (`feature_disabled`), or
    one that none of the plans of the user's and the team's active subscriptions includes
    (`feature_not_in_plan`; without subscriptions no plan gates). Usage events of such a feature
    are still billed: this answers "may", the usage that happened is charged."""
    feature = check_.feature_id
    if feature is None:
        return True
    if feature in catalog.tenant(customer_id).disabled_features:
        out.reason = "feature_disabled"
        out.actions = [{"type": "contact_admin", "feature_id": feature,
                        "message": f"the feature {feature!r} is switched off for this account "
                                   "(settings: disabled_features)"}]
        return False
    plans = catalog.active_plans(customer_id, check_.user_id, check_.team_id)
    if plans and not any(plan.includes(feature) for plan in plans):
        out.reason = "feature_not_in_plan"
        upgrades = catalog.plans_including(customer_id, feature)
        out.actions = [{"type": "upgrade", "feature_id": feature, "plans": upgrades,
                        "message": f"the feature {feature!r} is not in the plan"
                                   + (f"; these plans include it: {', '.join(upgrades)}" if upgrades else "")}]
        return False
    return True


def price(catalog: Catalog, customer_id: str, check_: Check, now: datetime, out: CheckOut) -> Decimal:
    """The credits the estimate requires (a usage estimate rated with the tenant's burn table in
    force now), written into `out`; 422 `no_rate` when nothing prices it."""
    if check_.credits is not None:
        out.required = out.estimated_credits = decimal_text(check_.credits)
        return check_.credits
    try:
        rated = catalog.rate_event(customer_id, check_.usage).result
    except NoRate as exc:
        raise ApiError(422, "no_rate", str(exc), "estimate") from None
    out.required = out.estimated_credits = decimal_text(rated.credits)
    out.rule_key, out.burn_table_id, out.burn_table_version = rated.rule_key, rated.burn_table_id, rated.burn_table_version
    return rated.credits


def assess(catalog: Catalog, balances: WalletBalances, exists: Callable[[str], bool], holds: Holds, customer_id: str,
           check_: Check, reservation_id: str | None, required: Decimal, now: datetime, out: CheckOut) -> None:
    """Decide `out.allowed` on the wallet the usage event will be charged to (routed with
    `exists`, wallet_access.wallet_exists): its available in the view, less this process's
    pending holds (a retry of `reservation_id` not counted twice).
    Pure and synchronous: the route and the AI proxy (api/proxy/) call it between awaits."""
    wallet_id = wallet_ids.route(customer_id, check_.user_id, check_.team_id, catalog.tenant(customer_id).routing_order,
                                 exists)
    wallet = _balance(balances, wallet_id, customer_id, now)
    own = holds.get(reservation_id) if reservation_id else None
    pending = holds.pending(wallet_id, now)
    if own is not None and own.wallet_id == wallet_id and not own.applied() and own.expires_at > now:
        pending -= own.amount  # a retry of a hold this process is writing: not held twice
    available = wallet.available - pending
    out.wallet_id, out.balance, out.reserved = wallet_id, decimal_text(wallet.balance), decimal_text(wallet.reserved)
    out.available = decimal_text(available)
    out.allowed = available >= required
    if not out.allowed:
        out.reason = "insufficient_credits"
        out.actions = [{"type": "top_up", "credits": decimal_text(required - available),
                        "message": f"buy at least {decimal_text(required - available)} credits "
                                   "(POST /v1/credits/purchase) for this wallet"}]


def _balance(balances: WalletBalances, wallet_id: str, customer_id: str, now: datetime) -> Balance:
    found = balances.get(wallet_id)
    if found is None or found.customer_id != customer_id:
        return Balance.empty(wallet_id, customer_id)
    return found.as_of(now)  # lots past their expiry do not count, though the agent lapses them lazily
