"""The entitlement routes' pure rules: the estimate (credits or usage), the hold's id and
commands, and what the release needs."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import msgspec
import pytest

from api.entitlement_requests import (
    CheckIn,
    ForeignCustomer,
    ReleaseIn,
    RequestError,
    parse_check,
    parse_release,
    release_command,
    reservation_id_for,
    reserve_command,
)
from schemas.usage_event import EventLimits

NOW = datetime(2026, 11, 26, 12, tzinfo=timezone.utc)
LIMITS = EventLimits(timedelta(days=35), timedelta(minutes=5), 50_000_000, 1_000, Decimal("1e12"), 64)
_check = msgspec.json.Decoder(CheckIn, float_hook=Decimal)


def check(estimate: dict, header_key: str | None = None, **fields):
    body = {"customer_id": "cus_a", "user_id": "u1", "estimate": estimate, **fields}
    return parse_check(_check.decode(msgspec.json.encode(body)), tenant="cus_a", header_key=header_key, limits=LIMITS,
                       max_amount=Decimal("1e9"), default_ttl_s=300, max_ttl_s=3600, now=NOW)


def refused(estimate: dict, **fields) -> RequestError:
    with pytest.raises(RequestError) as caught:
        check(estimate, **fields)
    return caught.value


def test_credits_are_read_exactly_from_a_number_or_a_string():
    assert check({"credits": "12.5"}).credits == Decimal("12.5")
    decoded = _check.decode(b'{"customer_id":"cus_a","user_id":"u","estimate":{"credits":0.1}}')
    assert decoded.estimate.credits == Decimal("0.1")  # never the float 0.1
    assert check({"credits": 3}).usage is None


@pytest.mark.parametrize("credits,why", [
    (0, "> 0"), ("-1", "> 0"), ("NaN", "decimal number"), (True, "number"), ("1e10", "at most"),
    ("0.0000000000001", "12 decimal places"), ("1_000", "decimal number"), ({"a": 1}, "number"),
])
def test_bad_credits_are_refused_naming_the_field(credits, why):
    error = refused({"credits": credits})
    assert error.field == "estimate.credits" and why in error.reason


def test_a_usage_estimate_becomes_the_params_rating_reads_at_now():
    usage = check({"event_type": "TOKEN_USAGE", "provider": "openai", "model": "gpt-4o",
                   "input_tokens": 1000, "cached_input_tokens": 200, "max_output_tokens": 500}).usage
    assert (usage.event_type, usage.model, usage.input_tokens, usage.cached_input_tokens, usage.output_tokens) == (
        "TOKEN_USAGE", "gpt-4o", 1000, 200, 500)
    assert usage.timestamp == NOW
    custom = check({"event_type": "CUSTOM", "unit_type": "requests", "quantity": "2.5"}).usage
    assert custom.quantity == Decimal("2.5") and custom.unit_type == "requests"


@pytest.mark.parametrize("estimate,field", [
    ({}, "estimate"),
    ({"credits": 1, "model": "gpt-4o"}, "estimate.model"),
    ({"event_type": "TOKEN"}, "estimate.event_type"),
    ({"event_type": "TOKEN_USAGE", "model": "gpt-4o"}, "estimate"),  # no units
    ({"event_type": "TOKEN_USAGE", "output_tokens": 1, "max_output_tokens": 2}, "estimate.max_output_tokens"),
    ({"event_type": "TOKEN_USAGE", "input_tokens": -1}, "estimate.input_tokens"),
    ({"event_type": "TOKEN_USAGE", "input_tokens": 50_000_001}, "estimate.input_tokens"),
    ({"event_type": "TOKEN_USAGE", "input_tokens": 1, "cached_input_tokens": 2}, "estimate.cached_input_tokens"),
    ({"event_type": "IMAGE_GENERATION", "image_count": 1001}, "estimate.image_count"),
    ({"event_type": "CUSTOM", "quantity": "-1"}, "estimate.quantity"),
    ({"event_type": "CUSTOM", "quantity": "1e13"}, "estimate.quantity"),
    ({"event_type": "CUSTOM", "quantity": "Infinity"}, "estimate.quantity"),
    ({"event_type": "CUSTOM", "quantity": "0.0000000000001"}, "estimate.quantity"),
    ({"event_type": "CUSTOM", "quantity": False}, "estimate.quantity"),
])
def test_bad_estimates_are_refused_naming_the_field(estimate, field):
    assert refused(estimate).field == field


def test_unknown_fields_and_wrong_types_fail_decoding():
    with pytest.raises(msgspec.ValidationError, match="input_token"):
        _check.decode(b'{"customer_id":"cus_a","user_id":"u","estimate":{"event_type":"TOKEN_USAGE","input_token":1}}')
    with pytest.raises(msgspec.ValidationError, match="reserve"):
        _check.decode(b'{"customer_id":"cus_a","user_id":"u","estimate":{"credits":1},"reserve":"yes"}')
    with pytest.raises(msgspec.ValidationError, match="user_id"):
        _check.decode(b'{"customer_id":"cus_a","estimate":{"credits":1}}')


def test_another_tenant_is_refused():
    body = _check.decode(b'{"customer_id":"cus_b","user_id":"u","estimate":{"credits":1}}')
    with pytest.raises(ForeignCustomer):
        parse_check(body, tenant="cus_a", header_key=None, limits=LIMITS, max_amount=Decimal(10),
                    default_ttl_s=300, max_ttl_s=3600, now=NOW)


def test_the_hold_lasts_the_default_or_the_requested_ttl_within_the_maximum():
    assert check({"credits": 1}, reserve=True).ttl_s == 300
    assert check({"credits": 1}, reserve=True, reserve_ttl_s=5).ttl_s == 5
    for ttl in (0, -5, 3601):
        assert refused({"credits": 1}, reserve=True, reserve_ttl_s=ttl).field == "reserve_ttl_s"


def test_the_reservation_id_derives_from_tenant_and_key_else_is_fresh():
    keyed = check({"credits": 1}, reserve=True, idempotency_key="k1")
    assert keyed.reservation_id() == keyed.reservation_id() == reservation_id_for("cus_a", "k1")
    assert keyed.reservation_id() != reservation_id_for("cus_b", "k1")
    assert check({"credits": 1}, header_key="k1", reserve=True).reservation_id() == keyed.reservation_id()
    fresh = check({"credits": 1}, reserve=True)
    assert fresh.reservation_id() != fresh.reservation_id() and fresh.reservation_id().startswith("res_")
    assert refused({"credits": 1}, header_key="k1", idempotency_key="k2").field == "idempotency_key"


def test_the_fingerprint_is_the_parsed_request_without_the_key():
    first = check({"credits": 10}, reserve=True, idempotency_key="a")
    assert first.fingerprint() == check({"credits": "10.0"}, reserve=True, idempotency_key="b").fingerprint()
    assert first.fingerprint() != check({"credits": 11}, reserve=True, idempotency_key="a").fingerprint()
    assert first.fingerprint() != check({"credits": 10}, reserve=True, reserve_ttl_s=5).fingerprint()
    assert first.fingerprint() != check({"credits": 10}, reserve=True, team_id="t").fingerprint()
    tokens = {"event_type": "TOKEN_USAGE", "model": "m", "input_tokens": 5}
    assert check(tokens, reserve=True).fingerprint() != check({**tokens, "input_tokens": 6}, reserve=True).fingerprint()


def test_the_reserve_command_holds_the_credits_until_the_expiry_under_the_reservation_id():
    wanted = check({"credits": 1}, reserve=True, reserve_ttl_s=60, feature_id="chat", idempotency_key="k")
    command = reserve_command(wanted, "res_1", "w:cus_a:user:u1", Decimal("2.5"), NOW)
    assert {k: command[k] for k in ("command_id", "customer_id", "wallet_id", "kind", "amount", "expires_at")} == {
        "command_id": "res_1", "customer_id": "cus_a", "wallet_id": "w:cus_a:user:u1", "kind": "reserve",
        "amount": Decimal("2.5"), "expires_at": NOW + timedelta(seconds=60)}
    assert command["metadata"]["feature_id"] == "chat" and command["metadata"]["idempotency_key"] == "k"
    release = release_command("cus_a", "w:cus_a:user:u1", "res_1", NOW, "hold expired")
    assert (release["kind"], release["reservation_id"], release["amount"]) == ("release", "res_1", Decimal(0))
    assert release["command_id"] != release_command("cus_a", "w", "res_1", NOW, "x")["command_id"]


def test_a_release_names_the_wallet_or_the_user_to_route_not_both():
    decode = msgspec.json.Decoder(ReleaseIn).decode
    assert parse_release(decode(b'{"customer_id":"cus_a","reservation_id":"r","wallet_id":"w"}'), tenant="cus_a").wallet_id == "w"
    assert parse_release(decode(b'{"customer_id":"cus_a","reservation_id":"r","user_id":"u"}'), tenant="cus_a").user_id == "u"
    for body in (b'{"customer_id":"cus_a","reservation_id":"r"}',
                 b'{"customer_id":"cus_a","reservation_id":"r","wallet_id":"w","user_id":"u"}',
                 b'{"customer_id":"cus_a","reservation_id":"r","team_id":"t"}'):
        with pytest.raises(RequestError):
            parse_release(decode(body), tenant="cus_a")
    with pytest.raises(ForeignCustomer):
        parse_release(decode(b'{"customer_id":"cus_b","reservation_id":"r","wallet_id":"w"}'), tenant="cus_a")


def seed_check(action: dict):
    body = {"customer_id": "cus_a", "user_id": "u1", "action": action}
    return parse_check(_check.decode(msgspec.json.encode(body)), tenant="cus_a", header_key=None, limits=LIMITS,
                       max_amount=Decimal("1e9"), default_ttl_s=300, max_ttl_s=3600, now=NOW)


def test_the_seed_action_is_read_as_the_same_usage_estimate():
    seed = seed_check({"provider": "openai", "model": "gpt-4o", "estimated_input_tokens": 1000,
                       "estimated_output_tokens": 500})
    same = check({"event_type": "TOKEN_USAGE", "provider": "openai", "model": "gpt-4o", "input_tokens": 1000,
                  "max_output_tokens": 500})
    assert (seed.credits, seed.usage) == (same.credits, same.usage)
    images = seed_check({"type": "image_generation", "model": "dall-e-3", "image_count": 2, "image_size": "1024x1024"})
    assert (images.usage.event_type, images.usage.image_count) == ("IMAGE_GENERATION", 2)
    assert seed_check({"model": "m", "estimated_tokens": 70}).usage.input_tokens == 70


@pytest.mark.parametrize("kind, event_type", [
    ("token_usage", "TOKEN_USAGE"),  # the seed's entitlements.check example
    ("TOKEN_USAGE", "TOKEN_USAGE"),
    ("Token_Usage", "TOKEN_USAGE"),
    ("llm_call", "TOKEN_USAGE"),
    ("LLM_CALL", "TOKEN_USAGE"),
    ("embedding", "EMBEDDING"),
    ("audio", "AUDIO"),
])
def test_every_event_type_is_an_action_type_in_any_case(kind, event_type):
    seed = seed_check({"type": kind, "provider": "openai", "model": "gpt-4-turbo", "estimated_input_tokens": 1000,
                       "estimated_output_tokens": 500})
    assert (seed.usage.event_type, seed.usage.input_tokens, seed.usage.output_tokens) == (event_type, 1000, 500)


def test_image_and_custom_actions_carry_their_units():
    images = seed_check({"type": "IMAGE_GENERATION", "provider": "openai", "model": "dall-e-3", "image_count": 1,
                         "image_size": "1024x1024", "quality": "hd"})
    assert (images.usage.event_type, images.usage.image_count, images.usage.quality) == ("IMAGE_GENERATION", 1, "hd")
    custom = seed_check({"type": "custom", "unit_type": "pages", "quantity": "5.5"})
    assert (custom.usage.event_type, custom.usage.unit_type, custom.usage.quantity) == ("CUSTOM", "pages", Decimal("5.5"))


@pytest.mark.parametrize("action, field", [
    ({"type": "teleport", "estimated_tokens": 1}, "action.type"),
    ({"estimated_tokens": 1, "estimated_input_tokens": 1}, "action.estimated_tokens"),
    ({"model": "gpt-4o"}, "action"),  # no units at all
    ({"estimated_input_tokens": -1}, "action.estimated_input_tokens"),  # the action's own names, not the estimate's
    ({"estimated_tokens": 10**12}, "action.estimated_tokens"),
    ({"estimated_tokens": 1, "estimated_output_tokens": -1}, "action.estimated_output_tokens"),
    ({"type": "custom", "unit_type": "pages", "quantity": "x"}, "action.quantity"),
])
def test_a_bad_action_is_refused_naming_the_field(action, field):
    with pytest.raises(RequestError) as caught:
        seed_check(action)
    assert caught.value.field == field


def test_an_estimate_or_an_action_exactly_one():
    for body in ({"customer_id": "cus_a", "user_id": "u1"},
                 {"customer_id": "cus_a", "user_id": "u1", "estimate": {"credits": 1}, "action": {"estimated_tokens": 1}}):
        with pytest.raises(RequestError) as caught:
            parse_check(_check.decode(msgspec.json.encode(body)), tenant="cus_a", header_key=None, limits=LIMITS,
                        max_amount=Decimal("1e9"), default_ttl_s=300, max_ttl_s=3600, now=NOW)
        assert caught.value.field == "estimate"
