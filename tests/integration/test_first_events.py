"""What a new user meets first: a tenant charged from its first event, a burn table
that rates the events reported a little late, and usage charged to the wallet a purchase
acknowledged a moment before opened, however far behind the wallet agent is.

Against the test stack's own worker and sinks; each test has tenants of its own.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import httpx
import orjson
import psycopg
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
from tests.integration.support import clickhouse_query, new_tenant, token_event

RULES = {"gpt-4o": {"input_tokens": 2.5, "output_tokens": 10.0, "per_unit": 1000}}  # 1000 in + 100 out = 3.5


def api(settings, tenant, method: str, path: str, **kwargs) -> httpx.Response:
    return httpx.request(method, f"{settings.api_url}{path}", headers={"X-OM-Api-Key": tenant.api_key}, timeout=30,
                         **kwargs)


def ledger_debits(settings, customer_id: str) -> dict[str, tuple[str, Decimal]]:
    """event_id → (wallet_id, amount) of the tenant's usage debits in the Postgres ledger."""
    with psycopg.connect(settings.database_url) as conn:
        rows = conn.execute("SELECT event_id, wallet_id, amount FROM ledger_entries "
                            "WHERE customer_id = %s AND kind = 'usage_debit'", (customer_id,)).fetchall()
    return {event_id: (wallet_id, amount) for event_id, wallet_id, amount in rows}


def test_a_tenant_created_by_the_cli_is_charged_at_the_default_from_its_first_event(settings):
    created = CliRunner().invoke(main, ["admin", "customers", "create", unique("fresh"), "--json"])
    assert created.exit_code == 0, created.output
    fresh = orjson.loads(created.output.splitlines()[0])
    tenant = type("Tenant", (), {"customer_id": fresh["customer_id"], "api_key": fresh["api_key"]})
    # No burn table, no settings: the seed's first call, as its README writes it.
    event = {"event_id": unique("evt"), "customer_id": tenant.customer_id, "user_id": "law-firm-a",
             "event_type": "TOKEN_USAGE", "feature_id": "legal-research", "provider": "OPENAI", "model": "gpt-4o",
             "input_tokens": 1000, "output_tokens": 500, "timestamp": datetime.now(timezone.utc).isoformat()}
    preview = api(settings, tenant, "POST", "/v1/rating/calculate",
                  json={k: event[k] for k in ("provider", "model", "input_tokens", "output_tokens")})
    assert preview.status_code == 200, preview.text
    quoted = preview.json()
    assert quoted["burn_table_id"] == "default" and Decimal(str(quoted["credits"])) > 0, quoted
    # The default: the provider cost, +20% (DEFAULT_BURN_MARKUP), in credits at the tenant's $0.01.
    assert Decimal(str(quoted["credits"])) == (Decimal(str(quoted["usd_cost"])) * Decimal("1.2") / Decimal("0.01")).quantize(
        Decimal("1e-12"))
    assert api(settings, tenant, "POST", "/v1/events/ingest", json={"events": [event]}).status_code == 202

    def landed():
        debits = ledger_debits(settings, tenant.customer_id)
        rows = clickhouse_query(settings, "SELECT credits, burn_table_id FROM usage_events FINAL "
                                          "WHERE customer_id = {c:String}", c=tenant.customer_id)
        return (debits, rows) if debits and rows else None

    debits, rows = eventually(landed, timeout_s=60, interval_s=0.25, what="the first event in the ledger and ClickHouse")
    charged = Decimal(str(quoted["credits"]))
    assert debits == {event["event_id"]: (wallet_ids.customer_wallet(tenant.customer_id), -charged)}
    assert rows == [(charged, "default")]


def test_a_late_event_is_charged_by_a_burn_table_created_a_second_ago(settings, tenant):
    created = api(settings, tenant, "POST", "/v1/burn-tables", json={"name": "Premium Tier Pricing", "rules": RULES})
    assert created.status_code == 201, created.text
    late = token_event(input_tokens=1000, output_tokens=100,
                       timestamp=(datetime.now(timezone.utc) - timedelta(minutes=10)).isoformat())
    backfill = token_event(input_tokens=2000, output_tokens=0,
                           timestamp=(datetime.now(timezone.utc) - timedelta(days=30)).isoformat())
    assert api(settings, tenant, "POST", "/v1/events/ingest", json={"events": [late, backfill]}).status_code == 202
    table_id = created.json()["burn_table_id"]
    debits = eventually(lambda: len(found := ledger_debits(settings, tenant.customer_id)) == 2 and found,
                        timeout_s=60, interval_s=0.25, what="both late events charged")
    assert {event_id: amount for event_id, (_, amount) in debits.items()} == {
        late["event_id"]: Decimal("-3.5"), backfill["event_id"]: Decimal("-5")}
    rows = eventually(lambda: len(found := clickhouse_query(
        settings, "SELECT event_id, burn_table_id FROM usage_events FINAL WHERE customer_id = {c:String}",
        c=tenant.customer_id)) == 2 and found, timeout_s=60, interval_s=0.25, what="both events in ClickHouse")
    assert {burn_table_id for _, burn_table_id in rows} == {table_id}


def test_usage_right_after_a_purchase_is_charged_to_the_users_wallet_however_late_the_wallet_agent(settings):
    """100 users: purchase (202, not waited for), then usage at once, while the wallet agent works
    through a backlog of another tenant's commands, so it applies the purchases seconds after the
    usage agent routes the usage."""
    busy, tenant = new_tenant(settings), new_tenant(settings)
    assert api(settings, tenant, "POST", "/v1/burn-tables", json={"name": "standard", "rules": RULES}).status_code == 201
    spec = topics(settings)
    with ConnectionPool(settings.database_url, min_size=1, max_size=2) as pool:
        codecs = worker_codecs.register(SchemaRegistry(pool), spec)
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "enable.idempotence": True,
                         "partitioner": "murmur2_random", "linger.ms": 20})
    now = datetime.now(timezone.utc)
    for i in range(20_000):  # the backlog: grants to another tenant's 2,000 users, on every partition
        wallet = wallet_ids.user_wallet(busy.customer_id, f"u{i % 2000}")
        producer.produce(spec.wallet_commands.name, key=wallet.encode(), value=codecs.wallet_command.encode({
            "command_id": unique("cmd"), "customer_id": busy.customer_id, "wallet_id": wallet, "kind": "grant",
            "amount": Decimal(1), "expires_at": None, "priority": None, "event_id": None, "run_id": None,
            "reservation_id": None, "reason": "backlog", "requested_at": now, "metadata": None}))
        producer.poll(0)
    assert producer.flush(60) == 0

    users = [f"user-{i}" for i in range(100)]
    events = {user: token_event(user_id=user, input_tokens=1000, output_tokens=100) for user in users}

    def purchase_then_use(user: str) -> None:
        bought = api(settings, tenant, "POST", "/v1/credits/purchase",
                     json={"customer_id": tenant.customer_id, "user_id": user, "amount": "100"})
        assert (bought.status_code, bought.json()["status"]) == (202, "accepted"), bought.text
        used = api(settings, tenant, "POST", "/v1/events/ingest", json={"events": [events[user]]})
        assert used.status_code == 202, used.text

    with ThreadPoolExecutor(8) as pool_:
        list(pool_.map(purchase_then_use, users))

    debits = eventually(lambda: len(found := ledger_debits(settings, tenant.customer_id)) == 100 and found,
                        timeout_s=120, interval_s=0.5, what="the 100 events charged")
    wrong = {event_id: wallet for event_id, (wallet, _) in debits.items()
             if wallet != wallet_ids.user_wallet(tenant.customer_id, events_by_id(events)[event_id])}
    assert not wrong, f"{len(wrong)} of 100 events charged to another wallet than their user's, e.g. {list(wrong.items())[:3]}"

    balances = CompactedView(settings.kafka_bootstrap, spec.wallet_balances.name, codecs.wallet_balance.decode).start()
    try:
        def settled():
            found = {user: balances.get(wallet_ids.user_wallet(tenant.customer_id, user)) for user in users}
            return all(b is not None and b["balance"] == Decimal("96.5") for b in found.values())

        eventually(settled, timeout_s=120, interval_s=0.5, what="every user's wallet at 100 - 3.5")
        assert balances.get(wallet_ids.customer_wallet(tenant.customer_id)) is None  # the tenant's wallet untouched
    finally:
        balances.close()


def events_by_id(events: dict[str, dict]) -> dict[str, str]:
    return {event["event_id"]: user for user, event in events.items()}


def test_a_parked_event_shows_with_its_remedy_and_is_charged_when_re_driven(settings, tenant):
    event = token_event(model="model-nobody-prices", input_tokens=1000, output_tokens=0)
    assert api(settings, tenant, "POST", "/v1/events/ingest", json={"events": [event]}).status_code == 202

    def parked():
        answer = api(settings, tenant, "GET", "/v1/dlq", params={"reason": "no_rate"})
        assert answer.status_code == 200, answer.text
        return answer.json() if answer.json()["matched"] == 1 else None

    listing = eventually(parked, timeout_s=60, interval_s=0.5, what="the event parked as no_rate")
    [record] = listing["records"]
    assert (record["event_id"], record["reason"], record["stage"]) == (event["event_id"], "no_rate", "rate")
    assert "model-nobody-prices" in record["detail"] and "burn table" in record["remedy"]
    assert "/v1/dlq/retry" in listing["retry"]

    stranger = new_tenant(settings)
    assert api(settings, stranger, "GET", "/v1/dlq").json()["matched"] == 0  # another tenant sees nothing
    refused = api(settings, stranger, "POST", "/v1/dlq/retry", json={"ids": [record["id"]]}).json()["outcomes"]
    assert [o["outcome"] for o in refused] == ["failed"]
    for bad, field in (({"ids": []}, "ids"), ({"ids": ["nope"]}, "ids"), ({"ids": [record["id"]], "x": 1}, "x")):
        answer = api(settings, tenant, "POST", "/v1/dlq/retry", json=bad)
        assert answer.status_code == 422 and field in answer.text, (bad, answer.text)
    unknown = api(settings, tenant, "GET", "/v1/dlq", params={"reason": "no_such_reason"})
    assert (unknown.status_code, unknown.json()["error"]["field"]) == (422, "reason")

    rules = {"model-nobody-prices": {"input_tokens": 2, "per_unit": 1000}}
    assert api(settings, tenant, "POST", "/v1/burn-tables", json={"name": "fix", "rules": rules}).status_code == 201
    retried = api(settings, tenant, "POST", "/v1/dlq/retry", json={"ids": [record["id"]]})
    assert retried.status_code == 200 and [o["outcome"] for o in retried.json()["outcomes"]] == ["retried"], retried.text
    debits = eventually(lambda: ledger_debits(settings, tenant.customer_id), timeout_s=60, interval_s=0.25,
                        what="the re-driven event charged")
    assert {k: v[1] for k, v in debits.items()} == {event["event_id"]: Decimal("-2")}
