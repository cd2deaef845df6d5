"""The whole pipeline on the test stack: HTTP ingest → usage agent (dedupe, rate, route) →
wallet agent → balances and ledger; and what it refuses, on usage.dlq with the reason.

Each test has a tenant of its own; the stack's worker does the work.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import httpx
import orjson
import pytest
from click.testing import CliRunner
from confluent_kafka import Producer
from psycopg_pool import ConnectionPool

from openmonetize import wallet_ids
from openmonetize.cli import main
from openmonetize.compacted_view import CompactedView
from schemas.registry import SchemaRegistry
from schemas.topics import topics
from stream_processors import codecs as worker_codecs
from tests.conftest import eventually, unique
from tests.integration.support import clickhouse_query, read_topic, token_event

RULES = {"gpt-4o": {"input_tokens": 2.5, "output_tokens": 10.0, "per_unit": 1000}}  # 1000 in + 100 out = 3.5


class Stack:
    """The stack's topics, seen the way the pipeline's own components see them."""

    def __init__(self, settings):
        self.settings = settings
        self.topics = topics(settings)
        self.pool = ConnectionPool(settings.database_url, min_size=1, max_size=2, open=True)
        self.codecs = worker_codecs.register(SchemaRegistry(self.pool), self.topics)
        self.producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "enable.idempotence": True,
                                  "partitioner": "murmur2_random"})
        self.balances = CompactedView(settings.kafka_bootstrap, self.topics.wallet_balances.name,
                                      self.codecs.wallet_balance.decode).start()

    def close(self) -> None:
        self.balances.close()
        self.pool.close()

    def api(self, tenant, method: str, path: str, **kwargs) -> httpx.Response:
        return httpx.request(method, f"{self.settings.api_url}{path}", headers={"X-OM-Api-Key": tenant.api_key},
                             timeout=30, **kwargs)

    def burn_table(self, tenant, rules=RULES, table_id: str | None = None) -> str:
        """Create a burn table (or a new version of `table_id`) in force since two days ago."""
        path = f"/v1/burn-tables/{table_id}/versions" if table_id else "/v1/burn-tables"
        body = {"rules": rules, "effective_from": (datetime.now(timezone.utc) - timedelta(days=2)).isoformat()}
        response = self.api(tenant, "POST", path, json=body if table_id else {**body, "name": "standard"})
        assert response.status_code == 201, response.text
        return response.json()["burn_table_id"]

    def purchase(self, wallet_id: str, customer_id: str, amount: str) -> None:
        self.producer.produce(self.topics.wallet_commands.name, key=wallet_id.encode(), value=self.codecs.wallet_command.encode({
            "command_id": unique("cmd"), "customer_id": customer_id, "wallet_id": wallet_id, "kind": "purchase",
            "amount": Decimal(amount), "expires_at": None, "priority": None, "event_id": None, "run_id": None,
            "reservation_id": None, "reason": None, "requested_at": datetime.now(timezone.utc), "metadata": None}))
        assert self.producer.flush(30) == 0
        eventually(lambda: self.balance(wallet_id) is not None, what=f"{wallet_id} to be funded")

    def ingest(self, tenant, events: list[dict]) -> httpx.Response:
        response = self.api(tenant, "POST", "/v1/events/ingest", json={"events": events})
        assert response.status_code == 202, response.text
        return response

    def produce_raw(self, record: dict) -> None:
        """Straight to usage.events, past the edge's checks, as any Kafka producer client could."""
        key = f"{record['customer_id']}:{record['user_id']}".encode()
        self.producer.produce(self.topics.usage_events.name, key=key, value=self.codecs.usage_event.encode(record))
        assert self.producer.flush(30) == 0

    def balance(self, wallet_id: str) -> Decimal | None:
        record = self.balances.get(wallet_id)
        return record["balance"] if record else None

    def dlq(self, customer_id: str) -> list[dict]:
        records = [self.codecs.dlq.decode(m.value()) for m in read_topic(self.settings.kafka_bootstrap, self.topics.usage_dlq.name)]
        return [r for r in records if r["customer_id"] == customer_id]

    def debits(self, wallet_id: str) -> list[dict]:
        entries = [self.codecs.ledger_entry.decode(m.value())
                   for m in read_topic(self.settings.kafka_bootstrap, self.topics.ledger_entries.name)]
        unique_entries = {e["entry_id"]: e for e in entries if e["wallet_id"] == wallet_id}
        return [e for e in unique_entries.values() if e["kind"] == "usage_debit"]


@pytest.fixture
def stack(settings):
    s = Stack(settings)
    yield s
    s.close()


def raw_event(customer_id: str, **fields) -> dict:
    now = datetime.now(timezone.utc)
    record = {
        "event_id": unique("evt"), "customer_id": customer_id, "user_id": "user-1", "team_id": None,
        "event_type": "TOKEN_USAGE", "feature_id": "chat", "provider": "openai", "model": "gpt-4o",
        "input_tokens": 1000, "output_tokens": 100, "cached_input_tokens": None, "image_count": None,
        "image_size": None, "quality": None, "unit_type": None, "quantity": None, "reservation_id": None,
        "timestamp": now - timedelta(seconds=1), "metadata": None, "received_at": now, "source": "kafka",
    }
    record.update(fields)
    return record


def test_200_events_and_20_client_retries_debit_the_wallet_exactly_200_times(stack, tenant, settings):
    """The whole pipeline's promise, through the public routes only."""
    stack.burn_table(tenant)
    bought = stack.api(tenant, "POST", "/v1/credits/purchase", params={"wait": "true"},
                       json={"customer_id": tenant.customer_id, "user_id": "user-1", "amount": "1000"})
    assert bought.status_code == 200 and bought.json()["status"] == "applied", bought.text
    events = [token_event(input_tokens=1000, output_tokens=100) for _ in range(200)]
    stack.ingest(tenant, events[:100])
    stack.ingest(tenant, events[100:])
    stack.ingest(tenant, events[:10])  # a batch retried
    for event in events[150:160]:  # single retries
        stack.ingest(tenant, [event])

    def credits():
        answer = stack.api(tenant, "GET", f"/v1/customers/{tenant.customer_id}/credits", params={"user_id": "user-1"})
        assert answer.status_code == 200, answer.text
        assert Decimal(answer.json()["balance"]) == Decimal("300"), answer.json()  # 1000 - 200 x 3.5
        return answer.json()

    eventually(credits, timeout_s=60, interval_s=0.2, what="GET credits to show 1000 - 200 x 3.5")
    wallet = wallet_ids.user_wallet(tenant.customer_id, "user-1")
    debits = stack.debits(wallet)
    assert len(debits) == 200 and {e["amount"] for e in debits} == {Decimal("-3.5")}
    assert stack.dlq(tenant.customer_id) == []

    def reconciled():  # the Postgres ledger sink writes a batch behind the topic
        result = CliRunner().invoke(main, ["reconcile", "--customer", tenant.customer_id, "--json"])
        assert result.exit_code == 0, result.output
        return result

    report = orjson.loads(eventually(reconciled, timeout_s=30, interval_s=0.5, what="reconcile to be clean").output)
    assert {k: report[k] for k in ("wallets", "entries", "mismatches", "postgres_entries", "clickhouse_events")} == {
        "wallets": 1, "entries": 201, "mismatches": [], "postgres_entries": 201, "clickhouse_events": 200}
    [(rows, credits, users)] = clickhouse_query(
        settings, "SELECT count(), sum(credits), uniqExact(user_id) FROM usage_events FINAL "
                  "WHERE customer_id = {c:String}", c=tenant.customer_id)
    assert (rows, credits, users) == (200, Decimal("700"), 1)


def test_what_cannot_be_charged_goes_to_the_dlq_with_its_reason(stack, tenant):
    stack.burn_table(tenant)
    customer = tenant.customer_id
    first = raw_event(customer)
    stack.produce_raw(first)
    stack.produce_raw({**first, "received_at": datetime.now(timezone.utc)})  # a retry: dropped silently
    stack.produce_raw({**first, "output_tokens": 999})  # same id, other usage
    stack.produce_raw(raw_event(customer, model="some-unknown-model"))
    stack.produce_raw(raw_event(customer, timestamp=datetime.now(timezone.utc) - timedelta(days=40)))
    stack.produce_raw(raw_event(customer, timestamp=datetime.now(timezone.utc) + timedelta(hours=1)))
    stranger = "cus_" + unique("nobody")
    stack.produce_raw(raw_event(stranger))
    stack.producer.produce(stack.topics.usage_events.name, key=f"{customer}:user-1".encode(), value=b"\x00garbage")
    stack.producer.flush(30)

    def reasons():
        found = sorted(r["reason"] for r in stack.dlq(customer) + stack.dlq(stranger))
        assert found == ["conflicting_duplicate", "no_rate", "too_new", "too_old", "unknown_customer"], found
        return found

    eventually(reasons, timeout_s=60, interval_s=0.5, what="one DLQ record per refused event")
    refused = {r["reason"]: r for r in stack.dlq(customer)}
    assert refused["no_rate"]["stage"] == "rate" and "some-unknown-model" in refused["no_rate"]["detail"]
    assert refused["conflicting_duplicate"]["event_id"] == first["event_id"]
    assert stack.codecs.usage_event.decode(refused["too_old"]["value"])["customer_id"] == customer  # original bytes
    eventually(lambda: stack.balance(wallet_ids.customer_wallet(customer)) == Decimal("-3.5"),
               what="the one good event charged once, to the customer wallet (no user wallet exists)")


def test_routing_prefers_the_user_then_the_team_then_the_customer_wallet(stack, tenant):
    stack.burn_table(tenant)
    customer = tenant.customer_id
    team = wallet_ids.team_wallet(customer, "team-a")
    stack.purchase(team, customer, "100")
    stack.purchase(wallet_ids.user_wallet(customer, "alice"), customer, "100")
    stack.ingest(tenant, [
        token_event(user_id="alice", team_id="team-a", input_tokens=1000, output_tokens=100),  # own wallet
        token_event(user_id="bob", team_id="team-a", input_tokens=1000, output_tokens=100),  # pooled
        token_event(user_id="carol", input_tokens=1000, output_tokens=100),  # the customer's
    ])
    eventually(lambda: (stack.balance(wallet_ids.user_wallet(customer, "alice")), stack.balance(team),
                        stack.balance(wallet_ids.customer_wallet(customer))) == (Decimal("96.5"), Decimal("96.5"), Decimal("-3.5")),
               what="each event charged to its wallet")
    assert stack.balance(wallet_ids.user_wallet(customer, "bob")) is None


def test_an_event_refused_for_want_of_a_rate_is_charged_when_re_driven_after_the_fix(stack, tenant):
    table_id = stack.burn_table(tenant)
    customer = tenant.customer_id
    event = raw_event(customer, model="new-model")
    stack.produce_raw(event)
    eventually(lambda: [r["reason"] for r in stack.dlq(customer)] == ["no_rate"], what="the no_rate refusal")
    stack.burn_table(tenant, {**RULES, "new-model": {"input_tokens": 1, "output_tokens": 0, "per_unit": 1000}}, table_id)
    stack.produce_raw(event)  # what `openmonetize dlq retry` does: the original again
    eventually(lambda: stack.balance(wallet_ids.customer_wallet(customer)) == Decimal("-1"),
               what="the re-driven event charged with the new version")


def test_the_reject_policy_refuses_what_the_wallet_cannot_pay_and_charges_the_rest(stack, tenant):
    stack.burn_table(tenant)
    customer = tenant.customer_id
    assert stack.api(tenant, "PUT", f"/v1/customers/{customer}/settings", json={"unfunded_policy": "reject"}).status_code == 200
    wallet = wallet_ids.user_wallet(customer, "user-1")
    stack.purchase(wallet, customer, "5")
    paid, unpaid = token_event(input_tokens=1000, output_tokens=100), token_event(input_tokens=1000, output_tokens=100)
    stack.ingest(tenant, [paid])
    eventually(lambda: stack.balance(wallet) == Decimal("1.5"), what="the first event charged")
    stack.ingest(tenant, [unpaid])
    refused = eventually(lambda: stack.dlq(customer), what="the second event refused")
    assert [(r["reason"], r["event_id"], r["stage"]) for r in refused] == [("insufficient_credits", unpaid["event_id"], "debit")]
    assert stack.balance(wallet) == Decimal("1.5") and len(stack.debits(wallet)) == 1


def test_a_tenant_routing_order_puts_the_team_wallet_first(stack, tenant):
    stack.burn_table(tenant)
    customer = tenant.customer_id
    assert stack.api(tenant, "PUT", f"/v1/customers/{customer}/settings",
                     json={"routing_order": ["team", "user", "customer"]}).status_code == 200
    team, own = wallet_ids.team_wallet(customer, "team-a"), wallet_ids.user_wallet(customer, "alice")
    stack.purchase(team, customer, "100")
    stack.purchase(own, customer, "100")
    stack.ingest(tenant, [token_event(user_id="alice", team_id="team-a", input_tokens=1000, output_tokens=100),
                          token_event(user_id="alice", input_tokens=1000, output_tokens=100)])  # no team: her own
    eventually(lambda: (stack.balance(team), stack.balance(own)) == (Decimal("96.5"), Decimal("96.5")),
               what="the team event on the team wallet, the other on hers")


def test_an_event_the_worker_cannot_process_is_parked_and_the_next_one_is_charged(stack, tenant):
    """Valid on its own, but 1e12 units at 1e25 credits each overflow decimal(38, 12)."""
    stack.burn_table(tenant, {**RULES, "CUSTOM": {"unit": "1e25"}})
    customer = tenant.customer_id
    huge = raw_event(customer, event_type="CUSTOM", model=None, provider=None, input_tokens=None, output_tokens=None,
                     unit_type="requests", quantity=Decimal("1e12"))
    stack.produce_raw(huge)
    stack.produce_raw(raw_event(customer))
    parked = eventually(lambda: stack.dlq(customer), what="the overflowing event in the DLQ")
    assert [(r["reason"], r["event_id"]) for r in parked] == [("processing_error", huge["event_id"])]
    assert "does not fit" in parked[0]["detail"]
    eventually(lambda: stack.balance(wallet_ids.customer_wallet(customer)) == Decimal("-3.5"),
               what="the next event charged: the partition did not stop")
