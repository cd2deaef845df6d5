"""The control plane end to end, through HTTP only: a tenant creates a burn table (the seed's body),
buys 100 credits for a user, and `entitlements/check` allows a 7.5-credit call and denies a
750-credit one with a reason; another tenant's key cannot read that wallet."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import httpx

from tests.conftest import eventually
from tests.integration.support import new_tenant

SEED_RULES = {"gpt-4o": {"input_tokens": 2.5, "output_tokens": 10.0, "per_unit": 1000}}


def usage(input_tokens: int, output_tokens: int) -> dict:
    return {"event_type": "TOKEN_USAGE", "provider": "openai", "model": "gpt-4o", "input_tokens": input_tokens,
            "max_output_tokens": output_tokens}


def test_burn_table_100_credits_7_5_allowed_750_denied_and_no_other_tenant_reads_the_wallet(settings):
    tenant, other = new_tenant(settings), new_tenant(settings)
    me = tenant.customer_id
    with httpx.Client(base_url=settings.api_url, headers={"X-OM-Api-Key": tenant.api_key}, timeout=30) as api:
        effective = (datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat()
        table = api.post("/v1/burn-tables", json={"name": "standard", "customer_id": me, "rules": SEED_RULES,
                                                  "effective_from": effective})
        assert table.status_code == 201, table.text
        assert table.json()["burn_table_id"].startswith("bt_") and table.json()["version"] == 1

        bought = api.post("/v1/credits/purchase", params={"wait": "true"},
                          json={"customer_id": me, "user_id": "u-42", "amount": 100})
        assert bought.status_code == 200 and bought.json()["status"] == "applied", bought.text
        assert bought.json()["balance"] == "100"

        def check(estimate: dict) -> dict:
            answer = api.post("/v1/entitlements/check", json={"customer_id": me, "user_id": "u-42",
                                                              "feature_id": "chat", "estimate": estimate})
            assert answer.status_code == 200, answer.text
            return answer.json()

        # 1000 input x 2.5 + 500 output x 10, per 1000 tokens = 7.5 credits; a hundred times more = 750.
        small = eventually(lambda: (found := check(usage(1000, 500)))["available"] == "100" and found,
                           timeout_s=15, what="the 100 credits in the answering process's view")
        assert (small["allowed"], small["required"], small["burn_table_version"]) == (True, "7.5", 1)
        large = check(usage(100_000, 50_000))
        assert (large["allowed"], large["required"], large["available"]) == (False, "750", "100")
        assert large["reason"] == "insufficient_credits"

        # The seed's body (an `action` with the estimated tokens) and its answer's keys.
        def seed_check(input_tokens: int, output_tokens: int) -> dict:
            answer = api.post("/v1/entitlements/check", json={
                "customer_id": me, "user_id": "u-42", "feature_id": "chat",
                "action": {"type": "llm_call", "provider": "openai", "model": "gpt-4o",
                           "estimated_input_tokens": input_tokens, "estimated_output_tokens": output_tokens}})
            assert answer.status_code == 200, answer.text
            return answer.json()

        allowed = seed_check(1000, 500)
        assert {k: allowed[k] for k in ("allowed", "reason", "estimated_credits", "available", "actions")} == {
            "allowed": True, "reason": None, "estimated_credits": "7.5", "available": "100", "actions": []}
        denied = seed_check(100_000, 50_000)
        assert {k: denied[k] for k in ("allowed", "reason", "estimated_credits", "available")} == {
            "allowed": False, "reason": "insufficient_credits", "estimated_credits": "750", "available": "100"}
        assert [(a["type"], a["credits"]) for a in denied["actions"]] == [("top_up", "650")]
        both = api.post("/v1/entitlements/check", json={"customer_id": me, "user_id": "u-42",
                                                         "estimate": {"credits": 1}, "action": {"model": "gpt-4o"}})
        assert both.status_code == 422 and both.json()["error"]["field"] == "estimate", both.text

    with httpx.Client(base_url=settings.api_url, headers={"X-OM-Api-Key": other.api_key}, timeout=30) as theirs:
        read = theirs.get(f"/v1/customers/{me}/credits", params={"user_id": "u-42"})
        assert read.status_code == 403 and read.json()["error"]["code"] == "foreign_customer"
        checked = theirs.post("/v1/entitlements/check", json={"customer_id": me, "user_id": "u-42",
                                                               "estimate": {"credits": 1}})
        assert checked.status_code == 403
        own = theirs.get(f"/v1/customers/{other.customer_id}/credits", params={"user_id": "u-42"})
        assert own.status_code == 200 and own.json()["balance"] == "0"  # its own u-42, not the first tenant's
