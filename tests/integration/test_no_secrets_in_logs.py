"""No secret reaches a log: requests carry our API keys (X-OM-Api-Key and Bearer, valid, unknown
and just created) and a provider-like key (as a credential, in event metadata, in refused
bodies); then the stack's log files, and the log of an API process of the test's own at DEBUG,
must contain none of them."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import httpx
import pytest

from openmonetize import clickhouse_client
from tests.conftest import eventually
from tests.integration.api_process import api_process
from tests.integration.support import new_tenant, token_event


def drive(api_url: str, tenant, provider_key: str) -> list[str]:
    """Requests carrying secrets; returns the secrets (the ones made here included)."""
    unknown = "om_" + secrets.token_urlsafe(32)
    mine = {"X-OM-Api-Key": tenant.api_key}
    with httpx.Client(base_url=api_url, timeout=30) as api:
        assert api.get("/v1/burn-tables", headers=mine).status_code == 200
        assert api.get("/v1/burn-tables", headers={"Authorization": f"Bearer {tenant.api_key}"}).status_code == 200
        for credential in (unknown, provider_key):
            assert api.get("/v1/burn-tables", headers={"X-OM-Api-Key": credential}).status_code == 401
            assert api.get("/v1/burn-tables", headers={"Authorization": f"Bearer {credential}"}).status_code == 401
        event = token_event(metadata={"openai_api_key": provider_key})
        assert api.post("/v1/events/ingest", json={"events": [event]}, headers=mine).status_code == 202
        refused = token_event(model=provider_key * 20)  # too long a label: refused, echoing nothing into a log
        assert api.post("/v1/events/ingest", json={"events": [refused]}, headers=mine).status_code == 400
        bad = {"customer_id": tenant.customer_id, "amount": "-1", "reason": provider_key}
        assert api.post("/v1/credits/purchase", json=bad, headers=mine).status_code == 422
        created = api.post("/v1/api-keys", json={"name": "rotated"}, headers=mine)
        assert created.status_code == 201
        new_key = created.json()["api_key"]
        assert api.get("/v1/burn-tables", headers={"Authorization": f"Bearer {new_key}"}).status_code == 200
        assert api.delete(f"/v1/api-keys/{created.json()['id']}", headers=mine).status_code == 200
        eventually(lambda: api.get("/v1/burn-tables", headers={"X-OM-Api-Key": new_key}).status_code == 401,
                   timeout_s=3, interval_s=0.05, what="the revoked key refused")  # its revocation is NOTIFYd
        # The dashboard: a key posted in the sign-in form (a bad one too), the session cookie, a key created there.
        assert api.post("/dashboard/signin", data={"api_key": unknown}).status_code == 401
        assert api.post("/dashboard/signin", data={"api_key": tenant.api_key}).status_code == 303
        cookie = api.cookies["om_dashboard"]
        token = re.search(r'name="csrf_token" value="([^"]+)"', api.get("/dashboard/api-keys").text).group(1)
        page = api.post("/dashboard/api-keys", data={"csrf_token": token, "name": "from-the-dashboard"}).text
        dashboard_key = re.search(r'id="new-key-secret">(om_[^<]+)<', page).group(1)
    return [tenant.api_key, unknown, provider_key, new_key, cookie, token, dashboard_key]


def leaks(paths: list[Path], found_secrets: list[str]) -> list[str]:
    out = []
    for path in paths:
        text = path.read_text(errors="replace")
        out += [f"{path.name}: {secret[:6]}..." for secret in found_secrets if secret in text]
    return out


@pytest.fixture
def provider_key() -> str:
    return "sk-proj-" + secrets.token_urlsafe(40)


def stack_secrets(settings) -> list[str]:
    """The stack's own credentials: the ClickHouse writer's and reader's passwords, the registry's operator key."""
    found = [clickhouse_client.credentials(settings, role).password for role in ("writer", "reader")]
    found.append(settings.schema_registry_operator_key)
    assert all(found), "the test stack has generated credentials"
    return found


def test_the_stacks_logs_hold_no_api_key_nor_provider_key(settings, tenant, provider_key):
    used = drive(settings.api_url, tenant, provider_key) + stack_secrets(settings)
    logs = sorted((settings.stack_dir / "logs").glob("*.log"))
    assert any(path.name == "api.log" and path.stat().st_size > 0 for path in logs), logs
    assert leaks(logs, used) == []


def test_an_api_at_debug_level_logs_no_secret_either(settings, tmp_path, provider_key):
    log = tmp_path / "api-debug.log"
    with api_process(log, LOG_LEVEL="DEBUG") as url:
        used = drive(url, new_tenant(settings), provider_key)
    assert f"Uvicorn running on {url}" in log.read_text()  # the process's own log (today nothing logs at DEBUG per request)
    assert leaks([log], used) == []
