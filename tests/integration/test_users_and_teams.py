"""A tenant's users, teams and team membership over HTTP against the real stack: created,
read back, paged, validated (ids, names, duplicates) and scoped to the API key's tenant."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.support import new_tenant


class Api:
    def __init__(self, settings, tenant):
        self.base = f"{settings.api_url}/v1/customers/{tenant.customer_id}"
        self.headers = {"X-OM-Api-Key": tenant.api_key}

    def __call__(self, method: str, path: str, **kwargs) -> httpx.Response:
        return httpx.request(method, self.base + path, headers=self.headers, timeout=30, **kwargs)


@pytest.fixture
def api(settings, tenant) -> Api:
    return Api(settings, tenant)


def ok(response: httpx.Response, status: int = 200) -> dict:
    assert response.status_code == status, response.text
    return response.json() if response.content else {}


def refused(response: httpx.Response, status: int, code: str, field: str | None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["code"], error.get("field")) == (code, field), error
    if field is not None:
        assert field in error["message"], error


def test_a_user_is_created_and_read_back(api):
    created = ok(api("POST", "/users", json={"user_id": "alice@example.com", "name": "Alice"}), 201)
    assert created == {"user_id": "alice@example.com", "name": "Alice", "created_at": created["created_at"]}
    assert ok(api("GET", "/users/alice@example.com")) == {**created, "teams": []}
    assert ok(api("POST", "/users", json={"user_id": "u-2"}), 201)["name"] is None


@pytest.mark.parametrize("user_id", ["", "-starts-with-dash", "has space", "slash/inside", "x" * 129, "é"])
def test_a_bad_user_id_is_422_naming_the_field(api, user_id):
    refused(api("POST", "/users", json={"user_id": user_id}), 422, "invalid_id", "user_id")


def test_bad_bodies_are_refused_naming_the_field(api):
    refused(api("POST", "/users", json={"user_id": "u", "name": "  "}), 422, "invalid_request", "name")
    refused(api("POST", "/teams", json={"team_id": "t", "name": "n" * 201}), 422, "invalid_request", "name")
    refused(api("POST", "/users", json={"name": "no id"}), 422, "invalid_request", "user_id")
    refused(api("POST", "/teams", json={"team_id": "t", "colour": "red"}), 422, "invalid_request", "colour")
    refused(api("POST", "/users", content=b"{not json"), 400, "malformed_json", None)


def test_a_duplicate_is_409_and_changes_nothing(api):
    first = ok(api("POST", "/users", json={"user_id": "bob", "name": "Bob"}), 201)
    refused(api("POST", "/users", json={"user_id": "bob", "name": "Robert"}), 409, "user_exists", "user_id")
    assert ok(api("GET", "/users/bob"))["name"] == first["name"]
    ok(api("POST", "/teams", json={"team_id": "research"}), 201)
    refused(api("POST", "/teams", json={"team_id": "research"}), 409, "team_exists", "team_id")


def test_the_same_ids_in_two_tenants_are_two_users(settings, api):
    other = Api(settings, new_tenant(settings))
    ok(api("POST", "/users", json={"user_id": "carol", "name": "Ours"}), 201)
    ok(other("POST", "/users", json={"user_id": "carol", "name": "Theirs"}), 201)
    assert ok(api("GET", "/users/carol"))["name"] == "Ours"
    assert ok(other("GET", "/users/carol"))["name"] == "Theirs"


def test_membership_is_put_idempotently_read_both_ways_and_removed(api):
    ok(api("POST", "/teams", json={"team_id": "research", "name": "Research"}), 201)
    for user in ("ann", "ben"):
        ok(api("POST", "/users", json={"user_id": user}), 201)

    added = ok(api("PUT", "/teams/research/members/ann"), 201)
    assert added == {"team_id": "research", "user_id": "ann", "added_at": added["added_at"]}
    assert ok(api("PUT", "/teams/research/members/ann"), 200) == added  # again: unchanged
    ok(api("PUT", "/teams/research/members/ben"), 201)

    team = ok(api("GET", "/teams/research"))
    assert (team["name"], team["member_count"], team["members"]) == ("Research", 2, ["ann", "ben"])
    assert ok(api("GET", "/users/ann"))["teams"] == ["research"]

    assert api("DELETE", "/teams/research/members/ann").status_code == 204
    refused(api("DELETE", "/teams/research/members/ann"), 404, "not_a_member", "user_id")
    assert ok(api("GET", "/teams/research"))["members"] == ["ben"]
    assert ok(api("GET", "/users/ann"))["teams"] == []


def test_membership_needs_an_existing_team_and_user(api):
    ok(api("POST", "/teams", json={"team_id": "ops"}), 201)
    ok(api("POST", "/users", json={"user_id": "dan"}), 201)
    refused(api("PUT", "/teams/nope/members/dan"), 404, "team_not_found", "team_id")
    refused(api("PUT", "/teams/ops/members/nobody"), 404, "user_not_found", "user_id")
    refused(api("DELETE", "/teams/nope/members/dan"), 404, "team_not_found", "team_id")
    refused(api("GET", "/users/nobody"), 404, "user_not_found", "user_id")
    refused(api("GET", "/teams/nope"), 404, "team_not_found", "team_id")


@pytest.mark.parametrize("kind, id_field", [("users", "user_id"), ("teams", "team_id")])
def test_lists_page_in_id_order_to_the_end(api, kind, id_field):
    ids = [f"m{i:02d}" for i in range(7)]
    for item in reversed(ids):
        ok(api("POST", f"/{kind}", json={id_field: item}), 201)

    seen, cursor, pages = [], None, 0
    while True:
        page = ok(api("GET", f"/{kind}", params={"limit": 3, **({"cursor": cursor} if cursor else {})}))
        seen += [item[id_field] for item in page[kind]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert (seen, pages) == (ids, 3)
    assert [item[id_field] for item in ok(api("GET", f"/{kind}"))[kind]] == ids


def test_list_parameters_are_validated(api):
    refused(api("GET", "/users", params={"cursor": "not-a-cursor"}), 422, "invalid_cursor", "cursor")
    refused(api("GET", "/teams", params={"limit": 0}), 422, "invalid_request", "query.limit")
    refused(api("GET", "/teams", params={"limit": 1001}), 422, "invalid_request", "query.limit")


def test_another_tenants_path_is_403(settings, api, tenant):
    other = new_tenant(settings)
    ours = Api(settings, tenant)
    ours.base = f"{settings.api_url}/v1/customers/{other.customer_id}"
    refused(ours("POST", "/users", json={"user_id": "eve"}), 403, "foreign_customer", "customer_id")
    refused(ours("GET", "/users"), 403, "foreign_customer", "customer_id")
