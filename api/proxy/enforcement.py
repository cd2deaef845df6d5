"""The entitlement check before a proxied call: the entitlement route's own decision
(api/entitlement_decisions.py `price` and `assess`), in this process, from its in-memory views of
the billing catalog and wallet.balances: no network round trip, no hold written (a hold would
cost a Kafka write per call; the call's usage event is charged when it completes)."""

from __future__ import annotations

from datetime import datetime, timezone

import msgspec

from api.entitlement_requests import Check, RequestError, parse_estimate
from api.errors import ApiError
from api.holds import Holds
from api.proxy.calls import Call, Refusal
from api.proxy.identity import Identity
from api import entitlement_decisions as decisions
from openmonetize import wallet_directory
from openmonetize.catalog.view import Catalog
from openmonetize.settings import Settings
from openmonetize.wallet_balances import WalletBalances
from openmonetize.wallet_directory import WalletDirectory
from schemas.usage_event import EventLimits

_NO_HOLDS = Holds()  # the proxy holds nothing


def require(settings: Settings, catalog: Catalog | None, balances: WalletBalances | None,
            directory: WalletDirectory | None, who: Identity, call: Call) -> None:
    """Return when the user may make the call; raise a Refusal otherwise."""
    if catalog is None or balances is None:
        raise Refusal(503, "unavailable", "OpenMonetize proxy: the billing catalog or the wallet balances are not loaded "
                                          "yet; retry shortly")
    now = datetime.now(timezone.utc)
    estimate = msgspec.structs.replace(call.estimate, provider=call.provider, model=call.model)
    try:
        _, usage = parse_estimate(estimate, limits=EventLimits.from_settings(settings),
                                  max_amount=settings.credits_max_amount, now=now)
    except RequestError as exc:
        raise Refusal(400, "invalid_request", f"OpenMonetize proxy: the call cannot be estimated ({exc})") from None
    check = Check(who.customer_id, who.user_id, who.team_id, who.feature_id, None, usage, False, 0, None)
    out = decisions.new_answer(catalog, who.customer_id, check)
    if not decisions.gate(catalog, who.customer_id, check, out):
        raise Refusal(403, "permission", f"OpenMonetize: {out.actions[0]['message']} ({out.reason})")
    try:
        required = decisions.price(catalog, who.customer_id, check, now, out)
    except ApiError as exc:  # no_rate: nothing in force prices this model
        raise Refusal(403, "permission", f"OpenMonetize proxy: this call cannot be priced: {exc.message}") from None
    decisions.assess(catalog, balances, wallet_directory.exists(directory, balances.get), _NO_HOLDS, who.customer_id,
                        check, None, required, now, out)
    if not out.allowed:
        raise Refusal(402, "insufficient_credits",
                      f"OpenMonetize: insufficient credits: this call needs about {out.required} credits and "
                      f"{out.wallet_id} has {out.available} available")
