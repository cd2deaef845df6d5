"""A compressed request body is refused with 415 naming Content-Encoding (api/content_encoding.py),
not misread as malformed JSON."""

from __future__ import annotations

import gzip

import httpx
import orjson
import pytest

from tests.integration.support import token_event


@pytest.mark.parametrize("encoding", ["gzip", "br", "deflate, gzip", "identity, gzip"])
def test_a_compressed_body_gets_415_naming_the_header(settings, tenant, encoding):
    body = gzip.compress(orjson.dumps({"events": [token_event()]}))
    headers = {"X-OM-Api-Key": tenant.api_key, "Content-Type": "application/json", "Content-Encoding": encoding}
    for path in ("/v1/events/ingest", "/v1/rating/calculate"):
        answer = httpx.post(f"{settings.api_url}{path}", content=body, headers=headers, timeout=30)
        assert answer.status_code == 415, answer.text
        error = answer.json()["error"]
        assert error["code"] == "unsupported_content_encoding" and error["field"] == "Content-Encoding"
        assert "Content-Encoding" in error["message"] and encoding in error["message"]


def test_identity_is_no_encoding(settings, tenant):
    headers = {"X-OM-Api-Key": tenant.api_key, "Content-Encoding": "identity"}
    answer = httpx.post(f"{settings.api_url}/v1/events/ingest", json={"events": [token_event()]}, headers=headers,
                        timeout=30)
    assert answer.status_code == 202 and answer.json()["accepted"] == 1, answer.text
