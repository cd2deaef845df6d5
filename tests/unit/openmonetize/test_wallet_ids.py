"""The routing rule the usage agent charges by and the entitlement check looks by."""

from __future__ import annotations

from openmonetize import wallet_ids

C = "cus_a"
USER, TEAM, CUSTOMER = "w:cus_a:user:u1", "w:cus_a:team:t1", "w:cus_a:customer"
DEFAULT = ("user", "team", "customer")


def route(existing: set[str], order=DEFAULT, user_id="u1", team_id="t1") -> str:
    return wallet_ids.route(C, user_id, team_id, order, existing.__contains__)


def test_the_first_existing_wallet_in_the_order_wins():
    assert route({USER, TEAM, CUSTOMER}) == USER
    assert route({TEAM, CUSTOMER}) == TEAM
    assert route({CUSTOMER}) == CUSTOMER
    assert route({USER, TEAM}, order=("team", "user", "customer")) == TEAM
    assert route({USER, CUSTOMER}, order=("customer", "user")) == CUSTOMER


def test_without_an_existing_wallet_the_customer_wallet_else_the_first_candidate_opens():
    assert route(set()) == CUSTOMER
    assert route(set(), order=("user", "team")) == USER
    assert route({"w:cus_a:user:other"}, order=("team",)) == TEAM


def test_a_team_is_skipped_when_the_event_names_none():
    assert route({TEAM, CUSTOMER}, team_id=None) == CUSTOMER
    assert route({CUSTOMER}, order=("team", "user"), team_id=None) == USER


def test_an_event_naming_no_level_of_the_order_goes_to_the_customer_wallet():
    assert route(set(), order=("team",), team_id=None) == CUSTOMER
