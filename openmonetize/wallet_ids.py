"""Wallet ids: one place that spells them, for the usage agent's routing, the credits routes and reports.

A wallet belongs to a user, a team (pooled credits) or the customer (tenant) itself:

    w:{customer_id}:user:{user_id}    w:{customer_id}:team:{team_id}    w:{customer_id}:customer

Ids are only ever built from their parts here, never parsed, so a ':' inside a user id is harmless.
"""

from __future__ import annotations

from collections.abc import Callable


def user_wallet(customer_id: str, user_id: str) -> str:
    return f"w:{customer_id}:user:{user_id}"


def team_wallet(customer_id: str, team_id: str) -> str:
    return f"w:{customer_id}:team:{team_id}"


def customer_wallet(customer_id: str) -> str:
    return f"w:{customer_id}:customer"


def wallet_for(customer_id: str, user_id: str | None = None, team_id: str | None = None) -> str:
    """The wallet a command names: the user's, else the team's, else the customer's."""
    if user_id:
        return user_wallet(customer_id, user_id)
    if team_id:
        return team_wallet(customer_id, team_id)
    return customer_wallet(customer_id)


def candidates(customer_id: str, user_id: str | None, team_id: str | None, order: tuple[str, ...]) -> list[str]:
    """The wallets an event may be charged to, in the tenant's routing order."""
    ids = {
        "user": user_wallet(customer_id, user_id) if user_id else None,
        "team": team_wallet(customer_id, team_id) if team_id else None,
        "customer": customer_wallet(customer_id),
    }
    return [ids[level] for level in order if ids.get(level)]


def route(
    customer_id: str, user_id: str | None, team_id: str | None, order: tuple[str, ...], exists: Callable[[str], bool]
) -> str:
    """The wallet an event is charged to: the first in the tenant's routing order that exists
    (`exists`: a command naming it was acknowledged, openmonetize/wallet_directory.py); if none does, the customer's wallet (when it
    is in the order), else the first candidate: the charge then opens that wallet. An event
    that names none of the order's levels (order ["team"], no team_id) goes to the customer's
    wallet.

    One rule for the usage agent, which charges events, and the entitlement check, which must
    look at the wallet the event will be charged to."""
    found = candidates(customer_id, user_id, team_id, order)
    for wallet_id in found:
        if exists(wallet_id):
            return wallet_id
    fallback = customer_wallet(customer_id)
    return fallback if fallback in found or not found else found[0]
