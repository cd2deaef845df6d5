"""The per-key rate limit and the request size limits on a real API process of the test's own
(tests/integration/api_process.py), run with a low rate and a small body limit."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import eventually, unique
from tests.integration.api_process import api_process
from tests.integration.support import new_tenant, token_event

MAX_BODY = 4096


@pytest.fixture(scope="module")
def small_api(settings, tmp_path_factory):
    log = tmp_path_factory.mktemp("limits") / "api.log"
    with api_process(log, API_RATE_LIMIT_PER_S="1", API_RATE_LIMIT_BURST="3", API_MAX_BODY_BYTES=str(MAX_BODY),
                     API_KEY_FAILED_LOOKUPS_PER_S="1", API_KEY_FAILED_LOOKUPS_BURST="5") as url:
        yield url


def test_a_key_over_its_rate_gets_429_with_retry_after_until_its_bucket_refills(settings, small_api):
    mine, theirs = new_tenant(settings), new_tenant(settings)
    with httpx.Client(base_url=small_api, timeout=30) as api:
        as_header = {"X-OM-Api-Key": mine.api_key}
        assert [api.get("/v1/burn-tables", headers=as_header).status_code for _ in range(3)] == [200] * 3
        refused = api.get("/v1/burn-tables", headers={"Authorization": f"Bearer {mine.api_key}"})  # same key
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
        error = refused.json()["error"]
        assert error["code"] == "rate_limited" and "API_RATE_LIMIT_PER_S" in error["message"]
        assert api.get("/v1/burn-tables", headers={"X-OM-Api-Key": theirs.api_key}).status_code == 200
        assert api.get("/health").status_code == 200  # no key, no limit
        eventually(lambda: api.get("/v1/burn-tables", headers=as_header).status_code == 200, timeout_s=5,
                   interval_s=0.25, what="a token refilled after Retry-After")


def test_an_address_guessing_keys_is_held_back_and_known_keys_are_not(settings, small_api):
    """Every unknown key costs a Postgres lookup, and a new key each time escapes the per-key
    limit: past the burst of failed lookups, an address's uncached keys get 429."""
    known = new_tenant(settings)
    guesses = [f"om_{unique('guess')}" for _ in range(6)]
    with httpx.Client(base_url=small_api, timeout=30) as api:
        def status(key: str) -> int:
            return api.get("/v1/burn-tables", headers={"X-OM-Api-Key": key}).status_code

        assert status(known.api_key) == 200  # cached from here on
        assert [status(key) for key in guesses[:5]] == [401] * 5
        held = api.get("/v1/burn-tables", headers={"X-OM-Api-Key": guesses[5]})
        assert held.status_code == 429 and int(held.headers["Retry-After"]) >= 1, held.text
        assert held.json()["error"]["code"] == "too_many_unknown_keys"
        assert status(known.api_key) == 200  # a known key is never held back
        assert status(guesses[0]) == 401  # remembered as unknown: no lookup, nothing to hold back
        eventually(lambda: status(guesses[5]) == 401, timeout_s=10, interval_s=0.5,
                   what="a failed lookup allowed again once the bucket refilled")
        # The price: while an address's bucket is empty, a real key it has not used yet waits too.
        fresh = new_tenant(settings)
        eventually(lambda: status(fresh.api_key) == 200, timeout_s=10, interval_s=0.5,
                   what="a new real key from the same address, once a token is back")


def test_a_control_plane_body_over_api_max_body_bytes_is_413_naming_the_limit(settings, small_api):
    tenant = new_tenant(settings)
    headers = {"X-OM-Api-Key": tenant.api_key, "Content-Type": "application/json"}
    body = b'{"name": "' + b"x" * MAX_BODY + b'", "rules": {}}'

    def chunked():
        yield body

    with httpx.Client(base_url=small_api, headers=headers, timeout=30) as api:
        for content in (body, chunked()):
            refused = api.post("/v1/burn-tables", content=content)
            assert refused.status_code == 413, refused.text
            error = refused.json()["error"]
            assert error["code"] == "body_too_large"
            assert f"at most {MAX_BODY} bytes (API_MAX_BODY_BYTES)" in error["message"]
        # Ingest keeps its own, larger limit (INGEST_MAX_BODY_BYTES).
        events = [token_event(metadata={"note": "x" * 200}) for _ in range(30)]
        accepted = api.post("/v1/events/ingest", json={"events": events})
        assert accepted.status_code == 202 and len(accepted.request.content) > MAX_BODY
