"""API keys over HTTP against the real stack: created with the secret shown once and only its
hash stored, listed without secrets, revoked (refused by every API process at once), the last
active key kept, and last_used_at recorded at most once a minute."""

from __future__ import annotations

import httpx
import psycopg

from openmonetize.stores import tenants
from tests.conftest import eventually
from tests.integration.support import new_tenant


def call(settings, api_key, method, path, **kwargs) -> httpx.Response:
    return httpx.request(method, f"{settings.api_url}{path}", headers={"X-OM-Api-Key": api_key}, timeout=30, **kwargs)


def create(settings, api_key, **body) -> dict:
    response = call(settings, api_key, "POST", "/v1/api-keys", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def listed(settings, api_key) -> dict[str, dict]:
    response = call(settings, api_key, "GET", "/v1/api-keys")
    assert response.status_code == 200, response.text
    return {key["id"]: key for key in response.json()["api_keys"]}


def refused_everywhere(settings, api_key) -> bool:
    """Twenty requests in a row are 401: the API runs several processes, each with its cache."""
    return all(call(settings, api_key, "GET", "/v1/api-keys").status_code == 401 for _ in range(20))


def test_a_created_key_works_and_its_secret_is_shown_once(settings, tenant):
    new = create(settings, tenant.api_key, name="ci deploys")

    assert set(new) == {"id", "name", "prefix", "created_at", "api_key"}
    assert new["name"] == "ci deploys" and new["api_key"].startswith("om_") and new["api_key"][:11] == new["prefix"]
    keys = listed(settings, new["api_key"])  # the new key authenticates as the same tenant
    assert set(keys) == {tenant.key_id, new["id"]}
    assert keys[new["id"]] == {"id": new["id"], "name": "ci deploys", "prefix": new["prefix"],
                               "created_at": new["created_at"], "last_used_at": keys[new["id"]]["last_used_at"],
                               "revoked_at": None}
    assert new["api_key"] not in call(settings, tenant.api_key, "GET", "/v1/api-keys").text
    with psycopg.connect(settings.database_url) as conn:
        [(stored,)] = conn.execute("SELECT key_hash FROM api_keys WHERE key_id = %s", (new["id"],)).fetchall()
    assert bytes(stored) == tenants.hash_key(new["api_key"])


def test_the_name_is_optional_and_validated(settings, tenant):
    assert call(settings, tenant.api_key, "POST", "/v1/api-keys").status_code == 201
    assert create(settings, tenant.api_key)["name"] == "default"
    for body, field in (({"name": " "}, "name"), ({"name": "x" * 201}, "name"), ({"nom": "x"}, "nom")):
        response = call(settings, tenant.api_key, "POST", "/v1/api-keys", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["field"] == field, response.text


def test_a_revoked_key_is_refused_by_every_api_process_at_once(settings, tenant):
    doomed = create(settings, tenant.api_key, name="doomed")
    for _ in range(20):  # cached as valid by every process (30 s TTL) before the revocation
        assert call(settings, doomed["api_key"], "GET", "/v1/api-keys").status_code == 200

    revoked = call(settings, tenant.api_key, "DELETE", f"/v1/api-keys/{doomed['id']}")

    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["id"] == doomed["id"] and revoked.json()["revoked_at"] is not None
    # Far less than the cache's 30 s: the revocation is announced, not waited out.
    eventually(lambda: refused_everywhere(settings, doomed["api_key"]), timeout_s=3, interval_s=0.05,
               what="every API process to refuse the revoked key")
    answer = call(settings, doomed["api_key"], "GET", "/v1/api-keys").json()
    assert answer["error"]["code"] == "invalid_api_key"
    assert listed(settings, tenant.api_key)[doomed["id"]]["revoked_at"] == revoked.json()["revoked_at"]


def test_revoking_twice_changes_nothing(settings, tenant):
    spare = create(settings, tenant.api_key)
    first = call(settings, tenant.api_key, "DELETE", f"/v1/api-keys/{spare['id']}")
    again = call(settings, tenant.api_key, "DELETE", f"/v1/api-keys/{spare['id']}")
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()


def test_the_last_active_key_cannot_be_revoked_through_the_api(settings, tenant):
    answer = call(settings, tenant.api_key, "DELETE", f"/v1/api-keys/{tenant.key_id}")
    assert answer.status_code == 409, answer.text
    assert answer.json()["error"] == {"code": "last_active_key", "field": "key_id",
                                      "message": answer.json()["error"]["message"]}

    other = create(settings, tenant.api_key)
    # The calling key itself may go once another is active; then the other is the last one.
    assert call(settings, tenant.api_key, "DELETE", f"/v1/api-keys/{tenant.key_id}").status_code == 200
    eventually(lambda: refused_everywhere(settings, tenant.api_key), timeout_s=3, interval_s=0.05,
               what="the revoked calling key to be refused")
    assert call(settings, other["api_key"], "DELETE", f"/v1/api-keys/{other['id']}").status_code == 409


def test_another_tenants_key_is_not_found_and_stays_active(settings, tenant):
    other = new_tenant(settings)
    create(settings, other.api_key)  # so that `other` has two: only the tenant check can refuse

    answer = call(settings, tenant.api_key, "DELETE", f"/v1/api-keys/{other.key_id}")

    assert answer.status_code == 404, answer.text
    assert answer.json()["error"]["code"] == "api_key_not_found"
    assert listed(settings, other.api_key)[other.key_id]["revoked_at"] is None
    assert other.key_id not in listed(settings, tenant.api_key)


def test_last_used_at_is_written_at_most_once_a_minute(settings):
    fresh = new_tenant(settings)
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        def last_used():
            return conn.execute("SELECT last_used_at FROM api_keys WHERE key_id = %s", (fresh.key_id,)).fetchone()[0]

        assert last_used() is None
        assert tenants.customer_for_key(conn, fresh.api_key) == fresh.customer_id
        first = last_used()
        assert first is not None
        assert tenants.customer_for_key(conn, fresh.api_key) == fresh.customer_id
        assert last_used() == first  # within the minute: not written again
        conn.execute("UPDATE api_keys SET last_used_at = now() - interval '61 seconds' WHERE key_id = %s",
                     (fresh.key_id,))
        stale = last_used()
        tenants.customer_for_key(conn, fresh.api_key)
        assert last_used() > stale
