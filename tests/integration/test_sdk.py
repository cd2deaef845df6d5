"""The Python SDK (openmonetize.sdk) against the real API, sync and async: typed results with
Decimal money, typed errors carrying the API's code and field, and retries through a relay
(tests/integration/relay.py) that answers 503/429 itself, stalls, or forwards a request and
drops the answer, so the SDK must retry with the SAME idempotency key (or event id) and the
API must act once."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from openmonetize.sdk import (
    APIConnectionError,
    AsyncOpenMonetize,
    AuthenticationError,
    EventRejected,
    OpenMonetize,
    PermissionDeniedError,
    RateLimitError,
    RetryPolicy,
    ServiceUnavailableError,
    UnprocessableEntityError,
    models,
)
from tests.conftest import eventually
from tests.integration.isolated import free_port
from tests.integration.relay import Relay
from tests.integration.support import new_tenant

FAST = RetryPolicy(max_retries=3, backoff_s=0.01, max_backoff_s=0.05)
RULES = {"gpt-4o": {"input_tokens": Decimal("2.5"), "output_tokens": 10, "per_unit": 1000}}  # 1000 in + 100 out = 3.5


@pytest.fixture
def relay(settings):
    relay = Relay(settings.api_url)
    yield relay
    relay.close()


@pytest.fixture
def om(settings, tenant):
    with OpenMonetize(tenant.api_key, customer_id=tenant.customer_id, base_url=settings.api_url, retry=FAST) as client:
        yield client


def through(relay: Relay, tenant, **options) -> OpenMonetize:
    return OpenMonetize(tenant.api_key, customer_id=tenant.customer_id, base_url=relay.url,
                        retry=options.pop("retry", FAST), **options)


def yesterday() -> datetime:
    return datetime.now(timezone.utc) - timedelta(days=1)


def balance_is(om: OpenMonetize, amount: str, user_id: str, reserved: str = "0") -> models.Credits:
    """Either API process may answer: wait until the one asked shows the amounts."""
    def shown():
        found = om.credits.balance(user_id=user_id)
        return (found.balance, found.reserved) == (Decimal(amount), Decimal(reserved)) and found

    return eventually(shown, timeout_s=15, what=f"{user_id}'s balance at {amount}, reserved {reserved}")


def test_the_seed_walkthrough_with_typed_decimal_results(om, tenant):
    table = om.burn_tables.create("standard", RULES, effective_from=yesterday())
    assert table.version == 1 and table.rules["gpt-4o"]["input_tokens"] == Decimal("2.5")

    bought = om.credits.purchase(Decimal("100"), user_id="u1", wait=True)
    assert (bought.status, bought.balance, bought.available) == ("applied", Decimal("100"), Decimal("100"))

    allowed = om.entitlements.check("u1", credits=Decimal("7.5"), feature_id="chat")
    denied = om.entitlements.check("u1", credits=750)
    assert (allowed.allowed, allowed.required, allowed.available) == (True, Decimal("7.5"), Decimal("100"))
    assert (denied.allowed, denied.reason) == (False, "insufficient_credits")

    rated = om.rating.calculate(provider="openai", model="gpt-4o", input_tokens=1000, output_tokens=100)  # the seed's call
    assert rated.credits == Decimal("3.5") and rated.burn_table_id == table.burn_table_id
    assert isinstance(rated.usd_cost, Decimal)

    held = om.entitlements.check("u1", provider="openai", model="gpt-4o", input_tokens=1000, max_output_tokens=100,
                                 reserve=True)
    assert held.allowed and held.required == Decimal("3.5") and held.reservation_id.startswith("res_")
    tracked = om.events.track("u1", "TOKEN_USAGE", "chat", provider="openai", model="gpt-4o", input_tokens=1000,
                              output_tokens=100, reservation_id=held.reservation_id)
    assert tracked.accepted == 1 and tracked.rejected == []
    balance_is(om, "96.5", "u1")


def test_grant_consume_release_versions_and_batches(om, tenant):
    table = om.burn_tables.create("standard", RULES, effective_from=yesterday())
    v2 = om.burn_tables.add_version(table.burn_table_id, {"default": {"unit": Decimal("0.5")}},
                                    effective_from=yesterday() + timedelta(hours=1))
    assert (v2.burn_table_id, v2.version) == (table.burn_table_id, 2)
    assert [t.version for t in om.burn_tables.list()] == [2]

    expires = datetime.now(timezone.utc) + timedelta(days=30)
    granted = om.credits.grant(Decimal("20.25"), team_id="research", expires_at=expires, reason="welcome", wait=True)
    assert (granted.status, granted.balance) == ("applied", Decimal("20.25"))
    spent = om.credits.consume(Decimal("0.25"), team_id="research", wait=True)
    assert (spent.status, spent.balance) == ("applied", Decimal("20"))
    lot = om.credits.balance(team_id="research").grants[0]
    assert (lot.kind, lot.granted, lot.remaining, lot.expires_at) == ("grant", Decimal("20.25"), Decimal("20"), expires)

    held = om.entitlements.check("u1", team_id="research", credits=5, reserve=True, wait=True)
    assert held.reservation_status == "applied" and held.wallet_id.endswith(":team:research")
    released = om.entitlements.release(held.reservation_id, wallet_id=held.wallet_id, wait=True)
    assert (released.status, released.available, released.reserved) == ("applied", Decimal("20"), Decimal("0"))

    batch = om.events.track_many([
        {"user_id": "u1", "event_type": "CUSTOM", "feature_id": "export", "unit_type": "row", "quantity": Decimal("2.5")},
        {"user_id": "u1", "event_type": "TOKEN_USAGE", "feature_id": "chat"},  # no units: refused, not raised
    ])
    assert batch.accepted == 1 and len(batch.event_ids) == 2
    assert [(r.index, r.event_id) for r in batch.rejected] == [(1, batch.event_ids[1])] and batch.rejected[0].field


def test_errors_are_typed_and_carry_the_api_code_and_field(settings, om, tenant):
    with pytest.raises(UnprocessableEntityError) as invalid:
        om.credits.purchase(Decimal("-1"), user_id="u1")
    assert (invalid.value.status, invalid.value.code, invalid.value.field) == (422, "invalid_amount", "amount")

    with pytest.raises(EventRejected) as rejected:
        om.events.track("u1", "TOKEN_USAGE", "chat", provider="openai", model="gpt-4o", input_tokens=10)
    assert rejected.value.field == "output_tokens" and "required" in rejected.value.message

    with pytest.raises(UnprocessableEntityError) as rules:
        om.burn_tables.create("bad", {"gpt-4o": {"input_tokens": -1}})
    assert (rules.value.code, rules.value.field) == ("invalid_rules", "rules.gpt-4o.input_tokens")

    with OpenMonetize("om_not_a_key", customer_id=tenant.customer_id, base_url=settings.api_url) as stranger:
        with pytest.raises(AuthenticationError) as unauthorized:
            stranger.credits.balance()
    assert unauthorized.value.status == 401 and unauthorized.value.code == "invalid_api_key"

    with pytest.raises(TypeError, match="amount must be a Decimal"):
        om.credits.purchase(2.5)  # a float is never money


def test_another_tenants_wallet_cannot_be_read_or_credited(settings, om, tenant):
    om.credits.purchase(Decimal("100"), user_id="u1", wait=True)
    other = new_tenant(settings)
    with OpenMonetize(other.api_key, customer_id=tenant.customer_id, base_url=settings.api_url) as intruder:
        with pytest.raises(PermissionDeniedError) as read:
            intruder.credits.balance(user_id="u1")
        with pytest.raises(PermissionDeniedError) as credit:
            intruder.credits.grant(Decimal("5"), user_id="u1")
    assert read.value.code == credit.value.code == "foreign_customer" and read.value.field == "customer_id"


def test_a_503_is_retried_with_the_same_idempotency_key_and_credits_once(relay, tenant):
    relay.answer_next(503)
    with through(relay, tenant) as om:
        bought = om.credits.purchase(Decimal("10"), user_id="u1", wait=True)
        assert bought.status == "applied" and bought.balance == Decimal("10")
        tries = relay.requests_to("/v1/credits/purchase")
        assert len(tries) == 2
        assert tries[0].headers["idempotency-key"] == tries[1].headers["idempotency-key"]
        assert tries[0].body == tries[1].body
        balance_is(om, "10", "u1")


def test_an_answer_lost_after_the_api_acted_is_replayed_not_applied_twice(relay, tenant):
    relay.drop_next()  # the purchase reaches the API, its answer never reaches the SDK
    with through(relay, tenant) as om:
        bought = om.credits.purchase(Decimal("10"), user_id="u1", wait=True)
        second = om.credits.purchase(Decimal("5"), user_id="u1", wait=True)  # a new call: a new key
        keys = [s.headers["idempotency-key"] for s in relay.requests_to("/v1/credits/purchase")]
        assert len(keys) == 3 and keys[0] == keys[1] != keys[2]
        assert bought.command_id != second.command_id and second.balance == Decimal("15")
        assert sorted(lot.granted for lot in balance_is(om, "15", "u1").grants) == [Decimal("5"), Decimal("10")]


def test_a_429_is_retried_after_retry_after_and_gives_up_with_a_typed_error(relay, tenant):
    relay.answer_next(429, headers={"Retry-After": "0"})
    with through(relay, tenant) as om:
        # A 429 means the API did nothing: even a POST without an idempotency key is retried.
        assert om.burn_tables.create("standard", RULES).version == 1
        relay.answer_next(429, times=4, headers={"Retry-After": "0"})
        with pytest.raises(RateLimitError) as limited:
            om.rating.calculate("TOKEN_USAGE", provider="openai", model="gpt-4o", input_tokens=1, output_tokens=1)
    assert limited.value.retry_after == 0 and len(relay.requests_to("/v1/rating/calculate")) == 4  # 1 + max_retries


def test_a_post_without_idempotency_is_not_retried_once_the_api_may_have_acted(relay, tenant):
    relay.answer_next(503)
    with through(relay, tenant) as om:
        with pytest.raises(ServiceUnavailableError):
            om.burn_tables.create("standard", RULES)
        assert len(relay.requests_to("/v1/burn-tables")) == 1
        assert om.burn_tables.list() == []


def test_timeouts_are_configurable_and_only_a_repeatable_request_is_retried_after_one(relay, tenant):
    relay.stall_next(1.0)
    with through(relay, tenant, timeout=0.3) as om:
        with pytest.raises(APIConnectionError, match="ReadTimeout"):
            om.burn_tables.create("standard", RULES, effective_from=yesterday())
        assert len(relay.requests_to("/v1/burn-tables")) == 1
        om.burn_tables.create("standard", RULES, effective_from=yesterday())
        relay.stall_next(1.0)
        rated = om.rating.calculate("TOKEN_USAGE", provider="openai", model="gpt-4o", input_tokens=1000,
                                    output_tokens=100)
        assert rated.credits == Decimal("3.5") and len(relay.requests_to("/v1/rating/calculate")) == 2


def test_a_closed_port_is_a_connection_error_after_the_retries(tenant):
    with OpenMonetize(tenant.api_key, customer_id=tenant.customer_id, base_url=f"http://127.0.0.1:{free_port()}",
                      retry=FAST) as om:
        with pytest.raises(APIConnectionError):
            om.credits.balance()


def test_the_async_client_retries_a_hold_and_an_event_with_the_same_key_and_id(settings, relay, tenant):
    async def scenario():
        async with AsyncOpenMonetize(tenant.api_key, customer_id=tenant.customer_id, base_url=relay.url,
                                     retry=FAST) as om:
            await om.burn_tables.create("standard", RULES, effective_from=yesterday())
            await om.credits.purchase(Decimal("100"), user_id="u1", wait=True)
            relay.answer_next(503)
            held = await om.entitlements.check("u1", credits=Decimal("40"), reserve=True, wait=True)
            relay.answer_next(503)
            tracked = await om.events.track("u1", "TOKEN_USAGE", "chat", provider="openai", model="gpt-4o",
                                            input_tokens=1000, output_tokens=100, reservation_id=held.reservation_id)
            return held, tracked

    held, tracked = asyncio.run(scenario())
    assert held.allowed and held.reservation_status == "applied"
    checks = relay.requests_to("/v1/entitlements/check")
    assert len(checks) == 2 and checks[0].headers["idempotency-key"] == checks[1].headers["idempotency-key"]
    events = relay.requests_to("/v1/events/ingest")
    assert len(events) == 2 and events[0].body == events[1].body  # same event_id and timestamp: charged once
    assert tracked.accepted == 1 and tracked.event_ids[0].startswith("evt_")

    with OpenMonetize(tenant.api_key, customer_id=tenant.customer_id, base_url=settings.api_url) as om:
        balance_is(om, "96.5", "u1", reserved="0")  # one hold, settled by the event, charged 3.5 once



def test_a_plan_whose_answer_is_lost_is_created_once_and_a_subscription_granted(relay, tenant):
    relay.drop_next()  # the plan reaches the API, its answer never reaches the SDK: retried with the same key
    with through(relay, tenant) as om:
        plan = om.plans.create("pro", 10, rollover="capped", rollover_cap=Decimal("2.5"), features=["chat"])
        assert (plan.credits, plan.rollover_cap, plan.features) == (Decimal(10), Decimal("2.5"), ["chat"])
        tries = [r.headers.get("idempotency-key") for r in relay.requests_to("/v1/plans")]
        assert len(tries) == 2 and tries[0] == tries[1] is not None
        assert [p.plan_id for p in om.plans.list()] == [plan.plan_id] and om.plans.get(plan.plan_id) == plan
        sub = om.subscriptions.create(plan.plan_id, user_id="u1")
        assert (sub.status, sub.periods_granted) == ("active", 1)
        assert [g.credits for g in om.subscriptions.get(sub.subscription_id).grants] == [Decimal(10)]
        assert om.subscriptions.cancel(sub.subscription_id).status == "cancelled"
