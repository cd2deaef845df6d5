"""The credits routes' pure rules: exact amounts, one wallet per command, idempotency keys."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import msgspec
import pytest

from api.credit_requests import (
    ConsumeIn,
    CreditsIn,
    ForeignCustomer,
    RequestError,
    command_id_for,
    idempotency_key,
    parse,
    parse_amount,
)

NOW = datetime(2026, 11, 26, 12, tzinfo=timezone.utc)
MAX = Decimal("1000000000")
_purchase = msgspec.json.Decoder(CreditsIn, float_hook=Decimal)
_consume = msgspec.json.Decoder(ConsumeIn, float_hook=Decimal)


def request(body: bytes, kind: str = "purchase", header_key: str | None = None):
    decoded = (_consume if kind == "consume" else _purchase).decode(body)
    return parse(kind, decoded, tenant="cus_a", header_key=header_key, max_amount=MAX, now=NOW)


@pytest.mark.parametrize(("raw", "expected"), [
    (b"10", "10"),
    (b"2.5", "2.5"),
    (b"0.1", "0.1"),  # a JSON number read exactly, not as the float 0.1000000000000000055...
    (b"0.000000000001", "0.000000000001"),
    (b'"2.5"', "2.5"),
    (b'"1e3"', "1000"),
    (b'"1.500000000000000"', "1.5"),  # trailing zeros beyond 12 places change nothing
    (b"1000000000", "1000000000"),
])
def test_amounts_are_read_exactly(raw, expected):
    body = b'{"customer_id": "cus_a", "amount": ' + raw + b"}"
    amount = request(body).amount
    assert amount == Decimal(expected) and amount.as_tuple().exponent == -12


@pytest.mark.parametrize(("raw", "reason"), [
    (b"0", "must be > 0"),
    (b"-5", "must be > 0"),
    (b'"-0.5"', "must be > 0"),
    (b"0.0000000000001", "at most 12 decimal places"),
    (b'"1.0000000000001"', "at most 12 decimal places"),
    (b"1000000000.000000000001", "at most 1000000000 (CREDITS_MAX_AMOUNT)"),
    (b"1e30", "at most 1000000000"),
    (b'"NaN"', "must be a decimal number"),
    (b'"Infinity"', "must be a decimal number"),
    (b'"1_000"', "must be a decimal number"),
    (b'" 1"', "must be a decimal number"),
    (b'""', "must be a decimal number"),
    (b'"ten"', "must be a decimal number"),
    (b"true", "got a boolean"),
    (b"null", "got null"),
    (b"[1]", "got an array"),
    (b'{"value": 1}', "got an object"),
])
def test_bad_amounts_are_refused_with_the_reason(raw, reason):
    with pytest.raises(RequestError) as refused:
        request(b'{"customer_id": "cus_a", "amount": ' + raw + b"}")
    assert refused.value.field == "amount" and reason in refused.value.reason


def test_decimal_amounts_given_directly_are_checked_too():
    assert parse_amount(Decimal("7"), MAX) == Decimal(7)
    with pytest.raises(RequestError, match="finite"):
        parse_amount(Decimal("NaN"), MAX)
    with pytest.raises(RequestError, match="finite"):
        parse_amount(Decimal("-Infinity"), MAX)
    with pytest.raises(RequestError, match="number or a decimal string"):
        parse_amount(1.5, MAX)  # a float never reaches money


def test_the_wallet_is_the_users_the_teams_or_the_customers():
    assert request(b'{"customer_id": "cus_a", "amount": 1, "user_id": "u:1"}').wallet_id == "w:cus_a:user:u:1"
    assert request(b'{"customer_id": "cus_a", "amount": 1, "team_id": "t1"}').wallet_id == "w:cus_a:team:t1"
    assert request(b'{"customer_id": "cus_a", "amount": 1}').wallet_id == "w:cus_a:customer"
    with pytest.raises(RequestError) as both:
        request(b'{"customer_id": "cus_a", "amount": 1, "user_id": "u1", "team_id": "t1"}')
    assert both.value.field == "team_id"


def test_another_tenants_customer_id_is_foreign():
    with pytest.raises(ForeignCustomer):
        request(b'{"customer_id": "cus_b", "amount": 1}')


def test_expiry_must_be_future_and_carry_a_timezone():
    later = (NOW + timedelta(days=30)).isoformat().encode()
    assert request(b'{"customer_id": "cus_a", "amount": 1, "expires_at": "' + later + b'"}', "grant").expires_at \
        == NOW + timedelta(days=30)
    for value, reason in ((b"2020-01-01T00:00:00Z", "in the future"), (b"2030-01-01T00:00:00", "timezone")):
        with pytest.raises(RequestError, match=reason) as refused:
            request(b'{"customer_id": "cus_a", "amount": 1, "expires_at": "' + value + b'"}', "grant")
        assert refused.value.field == "expires_at"


def test_a_consume_takes_no_expiry_or_priority():
    for extra in (b'"expires_at": "2030-01-01T00:00:00Z"', b'"priority": 1'):
        with pytest.raises(msgspec.ValidationError, match="unknown field"):
            request(b'{"customer_id": "cus_a", "amount": 1, ' + extra + b"}", "consume")
    assert request(b'{"customer_id": "cus_a", "amount": 1, "reason": "refund"}', "consume").reason == "refund"


def test_the_command_id_derives_from_tenant_and_key_and_is_fresh_without_one():
    keyed = request(b'{"customer_id": "cus_a", "amount": 1}', header_key="order-42")
    assert keyed.command_id() == keyed.command_id() == command_id_for("cus_a", "order-42")
    assert command_id_for("cus_b", "order-42") != command_id_for("cus_a", "order-42")
    unkeyed = request(b'{"customer_id": "cus_a", "amount": 1}')
    assert unkeyed.command_id() != unkeyed.command_id()


def test_the_fingerprint_is_the_parsed_request():
    same = [request(b'{"customer_id": "cus_a", "amount": ' + raw + b"}").fingerprint() for raw in (b"10", b'"10.0"', b"1e1")]
    assert len(set(same)) == 1
    other_amount = request(b'{"customer_id": "cus_a", "amount": 11}').fingerprint()
    other_kind = request(b'{"customer_id": "cus_a", "amount": 10}', "consume").fingerprint()
    other_wallet = request(b'{"customer_id": "cus_a", "amount": 10, "user_id": "u1"}').fingerprint()
    assert len({same[0], other_amount, other_kind, other_wallet}) == 4
    keyed = request(b'{"customer_id": "cus_a", "amount": 10, "idempotency_key": "k"}')
    assert keyed.fingerprint() == same[0] and keyed.idempotency_key == "k"


def test_the_idempotency_key_comes_from_the_header_or_the_body():
    assert idempotency_key("k1", None) == idempotency_key(None, "k1") == idempotency_key("k1", "k1") == "k1"
    assert idempotency_key(None, None) is None
    with pytest.raises(RequestError) as differs:
        idempotency_key("k1", "k2")
    assert differs.value.field == "idempotency_key"
    for bad in ("", "x" * 256, "caf\u00e9", "tab\there"):
        with pytest.raises(RequestError) as refused:
            idempotency_key(bad, None)
        assert refused.value.field == "Idempotency-Key"


def test_the_command_record_carries_the_request():
    parsed = request(b'{"customer_id": "cus_a", "amount": "5", "user_id": "u1", "priority": 2, '
                     b'"expires_at": "2030-01-01T00:00:00Z", "reason": "promo"}', "grant", header_key="k")
    command = parsed.command("cmd_1", NOW)
    assert command["kind"] == "grant" and command["wallet_id"] == "w:cus_a:user:u1" and command["amount"] == Decimal(5)
    assert (command["priority"], command["reason"], command["requested_at"]) == (2, "promo", NOW)
    assert command["metadata"] == {"source": "api", "idempotency_key": "k"}
