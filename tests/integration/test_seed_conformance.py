"""The seed product's README (../shared/seed/000_465fab65f932f6e0.txt), top to bottom, with its
exact bodies, against the real stack: its users arrive with code written against it.

Each test names the README section it covers and has a fresh tenant whose burn table is the
README's own (`burnTables.create`, section 4), created FIRST: the README reports events before it
creates a table, which needs the default burn table derived from provider prices.

Where the README's examples name the tenant (`customer_id: "legalai-company"`,
`X-OM-Customer-Id: "your-customer"`), the tenant's own id stands in: an API key's tenant is the
only one a request may name. The SDK's `new Date()` is sent as JavaScript serialises it.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import httpx
import openai
import pytest

from tests.conftest import eventually
from tests.fake_upstreams import OPENAI_USAGE, FakeUpstreams
from tests.integration.proxy_support import ProxyProcess, User, billed
from tests.integration.support import clickhouse_query, new_tenant

SEED_BURN_TABLE = {  # 4. Flexible Pricing Models: `client.burnTables.create(...)`
    "name": "Premium Tier Pricing",
    "rules": {
        "gpt-4-turbo": {"input_tokens": 1.5, "output_tokens": 10.0, "per_unit": 1000},
        "claude-3.5-sonnet": {"input_tokens": 0.8, "output_tokens": 4.0, "per_unit": 1000},
    },
}
# The seed's table prices gpt-4-turbo and claude-3.5-sonnet tokens only, while its README also
# reports dall-e-3 images and PDF pages and proxies gpt-4. A table has no fallback for what it
# does not price, so a version 2 (our richer shape) adds rules for those, the seed's unchanged.
EXTRA_RULES = {
    "dall-e-3": {"images": {"1024x1024:hd": "8"}, "image": "4"},
    "CUSTOM:pages": {"unit": "0.5"},
    "gpt-4": {"input_tokens": "30", "output_tokens": "60", "per_unit": 1000},
}


def js_now() -> str:
    """`new Date()` as JSON.stringify writes it: milliseconds and Z."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Seed:
    """A fresh tenant with the seed's burn table, and its API."""

    def __init__(self, settings):
        self.settings = settings
        self.tenant = new_tenant(settings)
        self.customer_id = self.tenant.customer_id
        created = self.post("/v1/burn-tables", SEED_BURN_TABLE)
        assert created.status_code == 201, created.text
        self.burn_table = created.json()

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        return httpx.request(method, f"{self.settings.api_url}{path}", headers={"X-OM-Api-Key": self.tenant.api_key},
                             timeout=30, **kwargs)

    def post(self, path: str, body: dict, **params) -> httpx.Response:
        return self.request("POST", path, json=body, params=params)

    def answered(self, path: str, body: dict) -> dict:
        """The 200 answer, once this tenant's burn table is in the catalog of whichever API
        process answers (each reads it from Kafka within a second or so)."""
        def ok():
            answer = self.post(path, body)
            if answer.status_code == 422 and answer.json()["error"]["code"] == "no_rate":
                return None  # not in this process's catalog yet
            assert answer.status_code == 200, answer.text  # reported as the last error at the deadline
            return answer.json()

        return eventually(ok, timeout_s=15, interval_s=0.1, what=f"{path} to price with the seed's burn table")

    def extend_burn_table(self) -> None:
        """Version 2: the seed's rules and EXTRA_RULES, in force from now."""
        rules = {**SEED_BURN_TABLE["rules"], **EXTRA_RULES}
        added = self.post(f"/v1/burn-tables/{self.burn_table['burn_table_id']}/versions", {"rules": rules})
        assert added.status_code == 201 and added.json()["version"] == 2, added.text

    def buy(self, user_id: str, amount: str) -> dict:
        bought = self.post("/v1/credits/purchase", {"customer_id": self.customer_id, "user_id": user_id,
                                                    "amount": amount}, wait="true")
        assert bought.status_code == 200 and bought.json()["status"] == "applied", bought.text
        return bought.json()

    def credits(self, **wallet) -> dict:
        answer = self.request("GET", f"/v1/customers/{self.customer_id}/credits", params=wallet)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def usage_debits(self) -> dict[str, dict]:
        """The tenant's usage debits in the ledger route, by event id."""
        answer = self.request("GET", f"/v1/customers/{self.customer_id}/ledger", params={"kind": "usage_debit"})
        assert answer.status_code == 200, answer.text
        return {entry["event_id"]: entry for entry in answer.json()["entries"]}


@pytest.fixture
def seed(settings) -> Seed:
    return Seed(settings)


# --- 🚀 AI Proxy (Zero-Code Integration) ----------------------------------------------------
def test_ai_proxy_x_om_headers_bill_the_call_to_the_user_they_name(settings, seed, tmp_path):
    upstreams = FakeUpstreams().start()  # a fake OpenAI speaking its wire format
    proxy = ProxyProcess(upstreams.url, tmp_path / "proxy.log")
    try:
        seed.extend_burn_table()  # gpt-4, the README's proxied model
        seed.buy("user-123", "1000")
        client = openai.OpenAI(api_key="sk-test-provider-key", base_url=f"{proxy.url}/v1", max_retries=0,
                               default_headers={
                                   "X-OM-Customer-Id": seed.customer_id,
                                   "X-OM-User-Id": "user-123",
                                   "X-OM-Feature-Id": "ai-chat",
                                   "X-OM-Api-Key": seed.tenant.api_key,
                               })

        def answered():  # once the proxy's own views show version 2 and the credits
            try:
                return client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "Hello!"}])
            except openai.APIStatusError as exc:  # 403 "cannot be priced" or 402 "insufficient credits" until then
                assert exc.status_code in (402, 403), exc
                return None

        response = eventually(answered, timeout_s=30, interval_s=0.2, what="the proxied call to be allowed")
        assert response.usage.prompt_tokens == OPENAI_USAGE["prompt_tokens"]
        [forwarded] = [r for r in upstreams.requests if r.path == "/v1/chat/completions"]
        assert not [name for name in forwarded.headers if name.startswith("x-om-")]  # ours stay with us

        [row] = billed(settings, User(seed.tenant, "user-123"), 1)
        assert (row.provider, row.model, row.source) == ("openai", "gpt-4", "proxy")
        # (1234 input tokens, the 200 cached ones at the input rate) x 30 + 56 x 60, per 1000
        assert row.credits == Decimal("40.38") and row.ledger_amount == Decimal("-40.38")
    finally:
        proxy.stop()
        upstreams.stop()


# --- 1. Event Ingestion (SDK Method) -----------------------------------------------------------
def test_events_track_the_three_examples_are_accepted_and_charged(settings, seed):
    seed.extend_burn_table()  # dall-e-3 images and PDF pages
    tokens = {
        "event_id": "evt_123",
        "customer_id": seed.customer_id,  # "legalai-company": your company, the tenant
        "user_id": "law-firm-a",
        "event_type": "TOKEN_USAGE",
        "feature_id": "legal-research",
        "provider": "OPENAI",
        "model": "gpt-4-turbo",
        "input_tokens": 1000,  # response.usage.prompt_tokens
        "output_tokens": 500,  # response.usage.completion_tokens
        "timestamp": js_now(),
    }
    image = {
        "event_id": "evt_img_123",
        "customer_id": seed.customer_id,
        "user_id": "law-firm-a",
        "event_type": "IMAGE_GENERATION",
        "feature_id": "logo-creator",
        "provider": "OPENAI",
        "model": "dall-e-3",
        "image_count": 1,
        "image_size": "1024x1024",
        "quality": "hd",
        "timestamp": js_now(),
    }
    custom = {
        "event_id": "evt_custom_123",
        "customer_id": seed.customer_id,
        "user_id": "law-firm-a",
        "event_type": "CUSTOM",
        "feature_id": "pdf-processing",
        "unit_type": "pages",
        "quantity": 5,
        "timestamp": js_now(),
    }
    for event in (tokens, image, custom):  # events.track / trackCustomEvent: one event per call
        answer = seed.post("/v1/events/ingest", {"events": [event]})
        assert (answer.status_code, answer.json()) == (202, {"accepted": 1, "rejected": []}), answer.text
    # API Endpoints, "Batch event ingestion with deduplication": the three again, retried as a
    # batch, are charged once; a marker after them (same user, so the same partitions, in
    # order) shows that nothing more is coming.
    retried = seed.post("/v1/events/ingest", {"events": [tokens, image, custom]})
    assert (retried.status_code, retried.json()["accepted"]) == (202, 3), retried.text
    marker = {**tokens, "event_id": "evt_124", "timestamp": js_now()}
    assert seed.post("/v1/events/ingest", {"events": [marker]}).status_code == 202

    debits = eventually(lambda: "evt_124" in (found := seed.usage_debits()) and found, timeout_s=60, interval_s=0.25,
                        what="the events charged in the ledger")
    assert {event_id: Decimal(entry["amount"]) for event_id, entry in debits.items()} == {
        "evt_123": Decimal("-6.5"),  # 1000 x 1.5 / 1000 + 500 x 10.0 / 1000
        "evt_img_123": Decimal("-8"),  # images["1024x1024:hd"]
        "evt_custom_123": Decimal("-2.5"),  # 5 pages x 0.5
        "evt_124": Decimal("-6.5"),
    }
    # law-firm-a has no wallet of its own: the tenant's wallet pays (it may overdraw by default).
    assert {entry["wallet_id"] for entry in debits.values()} == {f"w:{seed.customer_id}:customer"}
    assert eventually(lambda: seed.credits()["balance"] == "-23.5", timeout_s=15, what="the balance at -23.5")

    # The event is stored as sent ("OPENAI"), and priced with openai's price (gpt-4-turbo: $10 / $30 per 1M).
    stored = eventually(lambda: clickhouse_query(
        settings, "SELECT provider, usd_cost FROM usage_events FINAL WHERE customer_id = {c:String} "
                  "AND event_id = 'evt_123'", c=seed.customer_id), timeout_s=30, what="evt_123 in ClickHouse")
    assert stored == [("OPENAI", Decimal("0.025"))]


# --- 2. Real-Time Entitlement Checks -------------------------------------------------------------
def test_entitlements_check_with_the_seed_action(seed):
    body = {
        "customer_id": seed.customer_id,  # "cust_abc"
        "user_id": "user_456",
        "feature_id": "ai-text-generation",
        "action": {
            "type": "token_usage",
            "provider": "openai",
            "model": "gpt-4-turbo",
            "estimated_input_tokens": 1000,
            "estimated_output_tokens": 500,
        },
    }
    refused = seed.answered("/v1/entitlements/check", body)
    assert (refused["allowed"], refused["reason"], refused["estimated_credits"]) == (False, "insufficient_credits", "6.5")
    assert refused["actions"] == [{"type": "top_up", "credits": "6.5", "message": refused["actions"][0]["message"]}]
    assert "/v1/credits/purchase" in refused["actions"][0]["message"]  # console.log(entitlement.actions): upgrade options

    seed.buy("user_456", "10")
    allowed = eventually(lambda: (a := seed.answered("/v1/entitlements/check", body))["allowed"] and a, timeout_s=15,
                         what="either API process to see the purchase")
    assert (allowed["reason"], allowed["actions"], allowed["available"]) == (None, [], "10")


# --- 3. Cost Calculation -------------------------------------------------------------------------
def test_rating_calculate_the_seed_body(seed):
    cost = seed.answered("/v1/rating/calculate", {
        "provider": "openai",
        "model": "gpt-4-turbo",
        "input_tokens": 1000,
        "output_tokens": 500,
    })
    # credits: 1000 x 1.5 / 1000 + 500 x 10.0 / 1000; USD: gpt-4-turbo at $10 / $30 per 1M tokens;
    # margin: (6.5 x $0.01 - $0.025) / $0.065
    assert (Decimal(cost["credits"]), Decimal(cost["usd_cost"]), cost["margin_percent"]) == (
        Decimal("6.5"), Decimal("0.025"), "61.54")
    assert (cost["rule_key"], cost["burn_table_version"], cost["price_source"]) == ("gpt-4-turbo", 1, "dataset")


@pytest.mark.parametrize("provider, model, rule_key, price", [
    ("OPENAI", "gpt-4-turbo", "gpt-4-turbo", ("openai", "gpt-4-turbo")),
    ("openai", "gpt-4-turbo-2024-04-09", "gpt-4-turbo", ("openai", "gpt-4-turbo")),  # the model OpenAI answers with
    ("anthropic", "claude-3.5-sonnet", "claude-3.5-sonnet", ("anthropic", "claude-3-5-sonnet")),
    ("Anthropic", "claude-3-5-sonnet-20241022", "claude-3.5-sonnet", ("anthropic", "claude-3-5-sonnet")),
])
def test_names_the_seed_uses_resolve_to_the_burn_table_rule_and_the_provider_price(seed, provider, model, rule_key,
                                                                                    price):
    [listed] = seed.request("GET", "/v1/providers/pricing", params={"provider": price[0], "model": price[1]}).json()["prices"]
    cost = seed.answered("/v1/rating/calculate", {"provider": provider, "model": model, "input_tokens": 1000,
                                                  "output_tokens": 500})
    rule = SEED_BURN_TABLE["rules"][rule_key]
    credits = (1000 * Decimal(str(rule["input_tokens"])) + 500 * Decimal(str(rule["output_tokens"]))) / 1000
    usd = (1000 * Decimal(listed["input_mtok"]) + 500 * Decimal(listed["output_mtok"])) / 1_000_000
    assert (cost["rule_key"], Decimal(cost["credits"]), Decimal(cost["usd_cost"])) == (rule_key, credits, usd)
    assert cost["price_version"] == listed["version"] and usd > 0


# --- 4. Flexible Pricing Models ------------------------------------------------------------------
def test_burn_tables_create_reads_the_seed_numbers_exactly(seed):
    table = seed.burn_table
    assert (table["name"], table["version"]) == ("Premium Tier Pricing", 1)
    assert table["rules"] == {
        "gpt-4-turbo": {"input_tokens": "1.5", "output_tokens": "10", "per_unit": "1000"},
        "claude-3.5-sonnet": {"input_tokens": "0.8", "output_tokens": "4", "per_unit": "1000"},
    }


# --- API Endpoints: Credit Management ------------------------------------------------------------
def test_credit_management_routes(seed):
    assert seed.buy("user-1", "100")["balance"] == "100"  # POST /v1/credits/purchase
    spent = seed.post("/v1/credits/consume", {"customer_id": seed.customer_id, "user_id": "user-1", "amount": "30"},
                      wait="true")  # POST /v1/credits/consume
    assert spent.status_code == 200 and (spent.json()["status"], spent.json()["balance"]) == ("applied", "70"), spent.text
    shown = eventually(lambda: (c := seed.credits(user_id="user-1"))["balance"] == "70" and c, timeout_s=15,
                       what="GET /v1/customers/:id/credits from either API process")
    assert (shown["customer_id"], shown["available"], [g["remaining"] for g in shown["grants"]]) == (
        seed.customer_id, "70", ["70"])


# --- API Endpoints: Provider Pricing -------------------------------------------------------------
def test_provider_pricing_lists_current_llm_prices(seed):
    answer = seed.request("GET", "/v1/providers/pricing")
    assert answer.status_code == 200, answer.text
    listed = {(p["provider"], p["model"]): p for p in answer.json()["prices"]}
    for provider, model in (("openai", "gpt-4-turbo"), ("anthropic", "claude-3-5-sonnet"), ("google", "gemini-1.5-pro"),
                            ("mistral", "mistral-large"), ("cohere", "command-r-plus")):  # Key Features' providers
        assert Decimal(listed[provider, model]["input_mtok"]) > 0, (provider, model)


# --- Monitoring: /health and /ready --------------------------------------------------------------
def test_health_and_ready(settings):
    for path in ("/health", "/ready"):
        assert httpx.get(f"{settings.api_url}{path}", timeout=10).status_code == 200, path
