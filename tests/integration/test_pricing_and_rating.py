"""Provider prices (dataset snapshot and tenant overrides) and the rating preview."""

from __future__ import annotations

from decimal import Decimal

import httpx

from tests.conftest import eventually
from tests.integration.support import new_tenant

RULES = {"gpt-4o": {"input_tokens": 2.5, "output_tokens": 10.0, "per_unit": 1000},
         "CUSTOM:requests": {"unit": "0.5"}}
EVENT = {"event_type": "TOKEN_USAGE", "provider": "openai", "model": "gpt-4o", "input_tokens": 1000, "output_tokens": 100}


def call(settings, method, key, path, body=None):
    return httpx.request(method, f"{settings.api_url}{path}", json=body, headers={"X-OM-Api-Key": key}, timeout=30)


def rate(settings, key, event):
    return call(settings, "POST", key, "/v1/rating/calculate", event)


def test_the_dataset_snapshot_is_listed(settings, tenant):
    response = call(settings, "GET", tenant.api_key, "/v1/providers/pricing?provider=openai&model=gpt-4o")
    assert response.status_code == 200, response.text
    [row] = response.json()["prices"]
    assert (row["source"], row["input_mtok"], row["output_mtok"]) == ("dataset", "2.5", "10")
    assert row["version"].startswith("genai-")


def test_rating_a_known_event_gives_the_hand_computed_figures(settings, tenant):
    assert call(settings, "POST", tenant.api_key, "/v1/burn-tables", {"name": "std", "rules": RULES}).status_code == 201
    result = eventually(lambda: (r := rate(settings, tenant.api_key, EVENT)).status_code == 200 and r.json(),
                        timeout_s=5, what="the new burn table in the API's catalog")
    # 1000 x 2.5/1000 + 100 x 10/1000 credits; 1000 x 2.5/1M + 100 x 10/1M USD; revenue at 0.01 USD per credit
    assert Decimal(result["credits"]) == Decimal("3.5")
    assert Decimal(result["usd_cost"]) == Decimal("0.0035")
    assert Decimal(result["revenue_usd"]) == Decimal("0.035")
    assert Decimal(result["margin_percent"]) == Decimal("90")
    assert (result["burn_table_version"], result["price_source"]) == (1, "dataset")
    assert result["price_version"].startswith("genai-")

    custom = rate(settings, tenant.api_key, {"event_type": "CUSTOM", "unit_type": "requests", "quantity": 3})
    assert Decimal(custom.json()["credits"]) == Decimal("1.5") and custom.json()["price_version"] is None


def test_an_override_changes_the_listing_and_rating_within_a_deadline(settings, tenant):
    call(settings, "POST", tenant.api_key, "/v1/burn-tables", {"name": "std", "rules": RULES})
    put = call(settings, "PUT", tenant.api_key, "/v1/providers/pricing/openai/gpt-4o",
               {"input_mtok": 5, "output_mtok": 20.5})
    assert put.status_code == 200, put.text
    assert (put.json()["source"], put.json()["version"], put.json()["output_mtok"]) == ("override", "override-1", "20.5")

    def listed():
        [row] = call(settings, "GET", tenant.api_key, "/v1/providers/pricing?provider=openai&model=gpt-4o").json()["prices"]
        return row["source"] == "override" and row

    assert eventually(listed, timeout_s=5, what="the override listed")["input_mtok"] == "5"
    rated = eventually(lambda: (r := rate(settings, tenant.api_key, EVENT).json()).get("price_source") == "override" and r,
                       timeout_s=5, what="rating with the override")
    assert Decimal(rated["usd_cost"]) == Decimal("0.00705")  # 1000 x 5/1M + 100 x 20.5/1M
    # Another tenant still sees the dataset price.
    other = new_tenant(settings)
    [row] = call(settings, "GET", other.api_key, "/v1/providers/pricing?provider=openai&model=gpt-4o").json()["prices"]
    assert row["source"] == "dataset"


def test_rating_errors(settings, tenant):
    # No burn table, and no provider price to derive the default one from.
    nothing = rate(settings, tenant.api_key, {**EVENT, "model": "model-nobody-prices"})
    assert (nothing.status_code, nothing.json()["error"]["code"]) == (422, "no_rate")
    assert "no burn table, and no provider price for openai/model-nobody-prices" in nothing.json()["error"]["message"]
    foreign = rate(settings, tenant.api_key, {**EVENT, "customer_id": "cus_someoneelse"})
    assert (foreign.status_code, foreign.json()["error"]["code"]) == (403, "foreign_customer")
    bad = rate(settings, tenant.api_key, {**EVENT, "input_tokens": "many"})
    assert (bad.status_code, bad.json()["error"]["field"]) == (422, "input_tokens")
    assert httpx.post(f"{settings.api_url}/v1/rating/calculate", json=EVENT).status_code == 401


def test_an_override_is_validated(settings, tenant):
    response = call(settings, "PUT", tenant.api_key, "/v1/providers/pricing/openai/gpt-4o",
                    {"input_mtok": -1, "output_mtok": "0.0000000000001"})
    assert response.status_code == 422
    assert {p["field"] for p in response.json()["error"]["problems"]} == {"input_mtok", "output_mtok"}
    empty = call(settings, "PUT", tenant.api_key, "/v1/providers/pricing/openai/gpt-4o", {})
    assert empty.status_code == 422 and empty.json()["error"]["code"] == "invalid_price"
    foreign = call(settings, "PUT", tenant.api_key, "/v1/providers/pricing/openai/gpt-4o",
                   {"input_mtok": 1, "customer_id": "cus_someoneelse"})
    assert foreign.status_code == 403


def test_rating_without_event_type_infers_it_and_names_what_is_missing(settings, tenant):
    assert call(settings, "POST", tenant.api_key, "/v1/burn-tables", {"name": "std", "rules": RULES}).status_code == 201
    seed = {"provider": "openai", "model": "gpt-4o", "input_tokens": 1000, "output_tokens": 100}  # the seed's shape
    rated = eventually(lambda: (r := rate(settings, tenant.api_key, seed)).status_code == 200 and r.json(),
                       timeout_s=5, what="the new burn table in the API's catalog")
    assert (Decimal(rated["credits"]), rated["rule_key"]) == (Decimal("3.5"), "gpt-4o")
    custom = rate(settings, tenant.api_key, {"unit_type": "requests", "quantity": 3})
    assert (Decimal(custom.json()["credits"]), custom.json()["rule_key"]) == (Decimal("1.5"), "CUSTOM:requests")

    nothing = rate(settings, tenant.api_key, {"provider": "openai", "model": "gpt-4o"})
    assert (nothing.status_code, nothing.json()["error"]["field"]) == (422, "input_tokens"), nothing.text
    assert "no units" in nothing.json()["error"]["message"] and "quantity" in nothing.json()["error"]["missing"]
    mixed = rate(settings, tenant.api_key, {"model": "gpt-image-1", "input_tokens": 10, "image_count": 1})
    assert (mixed.status_code, mixed.json()["error"]["field"]) == (422, "event_type"), mixed.text


def test_an_override_is_stored_under_the_dataset_names_and_found_under_every_spelling(settings, tenant):
    key = tenant.api_key
    call(settings, "POST", key, "/v1/burn-tables", {"name": "std", "rules": {"default": {"input_tokens": 1}}})
    put = call(settings, "PUT", key, "/v1/providers/pricing/OpenAI/gpt-4-turbo-2024-04-09", {"input_mtok": 7})
    assert put.status_code == 200, put.text
    assert (put.json()["provider"], put.json()["model"], put.json()["source"]) == ("openai", "gpt-4-turbo", "override")

    def listed():
        [row] = call(settings, "GET", tenant.api_key, "/v1/providers/pricing?provider=OPENAI&model=gpt-4-turbo-preview"
                     ).json()["prices"]
        return row["source"] == "override" and row

    assert (eventually(listed, timeout_s=5, what="the override listed")["model"]) == "gpt-4-turbo"
    for provider in ("OPENAI", "openai", "azure"):  # Azure resells OpenAI's models: the tenant's openai price
        event = {"event_type": "TOKEN_USAGE", "provider": provider, "model": "gpt-4-turbo", "input_tokens": 1000000}

        def overridden(event=event):
            rated = rate(settings, tenant.api_key, event).json()
            return rated.get("price_source") == "override" and rated

        rated = eventually(overridden, timeout_s=5, what=f"{provider} rated with the override")
        assert Decimal(rated["usd_cost"]) == Decimal("7")
