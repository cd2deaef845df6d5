"""GET/PUT /v1/customers/{id}/settings: defaults, partial updates, validation, tenant isolation."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.support import new_tenant

DEFAULTS = {"credit_price_usd": "0.01", "routing_order": ["user", "team", "customer"], "unfunded_policy": "allow_overdraft",
            "features": None, "disabled_features": []}


def call(settings, tenant, method, body=None, customer_id=None, **kwargs):
    return httpx.request(method, f"{settings.api_url}/v1/customers/{customer_id or tenant.customer_id}/settings",
                         json=body, headers={"X-OM-Api-Key": tenant.api_key}, timeout=30, **kwargs)


def test_defaults_until_set_then_a_put_changes_only_what_it_names(settings, tenant):
    assert call(settings, tenant, "GET").json() == {"customer_id": tenant.customer_id, **DEFAULTS}
    changed = call(settings, tenant, "PUT", {"unfunded_policy": "reject", "credit_price_usd": "0.002"})
    assert changed.status_code == 200, changed.text
    assert changed.json() == {"customer_id": tenant.customer_id, **DEFAULTS, "unfunded_policy": "reject",
                              "credit_price_usd": "0.002"}
    again = call(settings, tenant, "PUT", {"routing_order": ["team", "customer"]}).json()
    assert again["routing_order"] == ["team", "customer"] and again["unfunded_policy"] == "reject"
    assert call(settings, tenant, "GET").json() == again
    gated = call(settings, tenant, "PUT", {"features": ["chat", "video"], "disabled_features": ["video"]}).json()
    assert (gated["features"], gated["disabled_features"], gated["unfunded_policy"]) == (["chat", "video"], ["video"],
                                                                                          "reject")
    undeclared = call(settings, tenant, "PUT", {"features": None}).json()  # null: not declared; left out: kept
    assert (undeclared["features"], undeclared["disabled_features"]) == (None, ["video"])


@pytest.mark.parametrize("body, field", [
    ({"routing_order": []}, "routing_order"),
    ({"routing_order": ["user", "user"]}, "routing_order"),
    ({"routing_order": ["user", "org"]}, "routing_order"),
    ({"unfunded_policy": "maybe"}, "unfunded_policy"),
    ({"credit_price_usd": -1}, "credit_price_usd"),
    ({"credit_price_usd": "0.0000000000001"}, "credit_price_usd"),
    ({"credit_price_usd": 1e300}, "credit_price_usd"),
    ({"credit_price_usd": "cheap"}, "credit_price_usd"),
    ({"routing_order": "user"}, "routing_order"),
    ({"colour": "red"}, "colour"),
    ({"features": ["bad id"]}, "features[0]"),
    ({"features": ["chat"], "disabled_features": ["video"]}, "disabled_features[0]"),
])
def test_invalid_settings_name_the_field_and_change_nothing(settings, tenant, body, field):
    refused = call(settings, tenant, "PUT", body)
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["field"] == field
    assert call(settings, tenant, "GET").json() == {"customer_id": tenant.customer_id, **DEFAULTS}


def test_malformed_json_another_tenant_and_no_key(settings, tenant):
    malformed = httpx.put(f"{settings.api_url}/v1/customers/{tenant.customer_id}/settings", content=b"{",
                          headers={"X-OM-Api-Key": tenant.api_key})
    assert malformed.status_code == 400 and malformed.json()["error"]["code"] == "malformed_json"
    other = new_tenant(settings)
    assert call(settings, other, "PUT", {"unfunded_policy": "reject"}, customer_id=tenant.customer_id).status_code == 403
    assert call(settings, other, "GET", customer_id=tenant.customer_id).status_code == 403
    assert httpx.get(f"{settings.api_url}/v1/customers/{tenant.customer_id}/settings").status_code == 401
    assert call(settings, tenant, "GET").json()["unfunded_policy"] == "allow_overdraft"
