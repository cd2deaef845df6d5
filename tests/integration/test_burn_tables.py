"""Burn-table routes: create, list, get, new versions, validation, tenant isolation."""

from __future__ import annotations

import httpx

from tests.integration.support import new_tenant

RULES = {"gpt-4o": {"input_tokens": 2.5, "output_tokens": 10.0, "per_unit": 1000}}


def post(settings, key, path, body):
    return httpx.post(f"{settings.api_url}{path}", json=body, headers={"X-OM-Api-Key": key}, timeout=30)


def get(settings, key, path):
    return httpx.get(f"{settings.api_url}{path}", headers={"X-OM-Api-Key": key}, timeout=30)


def test_create_list_get_and_add_a_backdated_version(settings, tenant):
    created = post(settings, tenant.api_key, "/v1/burn-tables",
                   {"name": "standard", "customer_id": tenant.customer_id, "rules": RULES})
    assert created.status_code == 201, created.text
    table = created.json()
    assert table["burn_table_id"].startswith("bt_") and table["version"] == 1
    assert table["rules"] == {"gpt-4o": {"input_tokens": "2.5", "output_tokens": "10", "per_unit": "1000"}}
    table_id = table["burn_table_id"]

    later = post(settings, tenant.api_key, f"/v1/burn-tables/{table_id}/versions",
                 {"rules": {"default": {"unit": "0.1"}}, "effective_from": "2020-01-01T00:00:00Z"})
    assert later.status_code == 201, later.text
    assert (later.json()["version"], later.json()["effective_from"]) == (2, "2020-01-01T00:00:00Z")

    listed = get(settings, tenant.api_key, "/v1/burn-tables").json()["burn_tables"]
    assert [(t["burn_table_id"], t["version"]) for t in listed] == [(table_id, 2)]
    versions = get(settings, tenant.api_key, f"/v1/burn-tables/{table_id}").json()
    assert [v["version"] for v in versions["versions"]] == [1, 2]
    assert versions["name"] == "standard"
    assert versions["in_force_version"] == 1  # v2 is backdated before v1: v1 (later effective_from) rules now


def test_invalid_rules_list_every_problem_with_its_field(settings, tenant):
    response = post(settings, tenant.api_key, "/v1/burn-tables", {"name": "bad", "rules": {
        "gpt-4o": {"input_token": 2.5, "output_tokens": -1, "per_unit": 0},
        "dall-e-3": {"images": {"1024x1024": -4}},
    }})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_rules" and error["field"] == "rules.gpt-4o.input_token"
    assert {p["field"] for p in error["problems"]} == {
        "rules.gpt-4o.input_token", "rules.gpt-4o.output_tokens", "rules.gpt-4o.per_unit", "rules.dall-e-3.images.1024x1024"
    }
    assert all(p["reason"] for p in error["problems"])
    assert get(settings, tenant.api_key, "/v1/burn-tables").json() == {"burn_tables": []}


def test_the_body_shape_is_checked_by_field(settings, tenant):
    missing = post(settings, tenant.api_key, "/v1/burn-tables", {"rules": RULES})
    assert (missing.status_code, missing.json()["error"]["field"]) == (422, "name")
    naive = post(settings, tenant.api_key, "/v1/burn-tables",
                 {"name": "n", "rules": RULES, "effective_from": "2026-01-01T00:00:00"})
    assert (naive.status_code, naive.json()["error"]["field"]) == (422, "effective_from")
    malformed = httpx.post(f"{settings.api_url}/v1/burn-tables", content=b"{", headers={"X-OM-Api-Key": tenant.api_key})
    assert malformed.json()["error"]["code"] == "malformed_json" and malformed.status_code == 400


def test_tenants_are_isolated(settings, tenant):
    table_id = post(settings, tenant.api_key, "/v1/burn-tables", {"name": "mine", "rules": RULES}).json()["burn_table_id"]
    other = new_tenant(settings)
    assert get(settings, other.api_key, f"/v1/burn-tables/{table_id}").status_code == 404
    assert get(settings, other.api_key, "/v1/burn-tables/bt_doesnotexist").status_code == 404
    refused = post(settings, other.api_key, f"/v1/burn-tables/{table_id}/versions", {"rules": RULES})
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "not_found"
    foreign = post(settings, other.api_key, "/v1/burn-tables",
                   {"name": "x", "customer_id": tenant.customer_id, "rules": RULES})
    assert (foreign.status_code, foreign.json()["error"]["code"]) == (403, "foreign_customer")
    assert get(settings, other.api_key, "/v1/burn-tables").json() == {"burn_tables": []}
    assert httpx.get(f"{settings.api_url}/v1/burn-tables").status_code == 401
    assert httpx.post(f"{settings.api_url}/v1/burn-tables", json={"name": "x", "rules": RULES}).status_code == 401
