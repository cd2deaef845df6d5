"""`openmonetize admin customers …` and `admin api-keys …` against the running stack: the same
store as the HTTP routes, so a key the operator mints works over HTTP and one it revokes stops."""

from __future__ import annotations

import subprocess
import sys

import httpx
import orjson
import pytest

from tests.conftest import eventually, unique


def om(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "openmonetize", "admin", *args], capture_output=True, text=True,
                            timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"admin {' '.join(args)} exited {result.returncode}: {result.stderr}")
    return result


def status(settings, api_key: str) -> int:
    return httpx.get(f"{settings.api_url}/v1/api-keys", headers={"X-OM-Api-Key": api_key}, timeout=30).status_code


@pytest.mark.parametrize("command", [["customers"], ["customers", "create"], ["customers", "list"], ["api-keys"],
                                     ["api-keys", "create"], ["api-keys", "list"], ["api-keys", "revoke"]],
                         ids=" ".join)
def test_help(command):
    assert om(*command, "--help").stdout.startswith("Usage: ")


def test_an_operator_creates_a_customer_and_manages_its_keys(settings):
    name = unique("Acme")
    customer = orjson.loads(om("customers", "create", name, "--json").stdout)
    cid = customer["customer_id"]
    listed = {c["customer_id"]: c for c in orjson.loads(om("customers", "list", "--json").stdout)}
    assert (listed[cid]["name"], listed[cid]["active_keys"]) == (name, 1)
    assert name in om("customers", "list").stdout

    minted = orjson.loads(om("api-keys", "create", cid, "--name", "ops", "--json").stdout)
    assert status(settings, minted["api_key"]) == 200
    keys = orjson.loads(om("api-keys", "list", cid, "--json").stdout)
    assert [(k["key_id"], k["name"]) for k in keys][0] == (minted["key_id"], "ops")
    assert len(keys) == 2 and all(k["revoked_at"] is None for k in keys)
    assert minted["api_key"] not in om("api-keys", "list", cid).stdout

    # The operator may revoke every key, the last one included (the API refuses that to a tenant).
    for key in keys:
        om("api-keys", "revoke", cid, key["key_id"])
    last = om("api-keys", "revoke", cid, keys[-1]["key_id"])  # again: unchanged
    assert "has no active API key left" in last.stderr
    for secret in (customer["api_key"], minted["api_key"]):
        eventually(lambda: status(settings, secret) == 401, timeout_s=3, what="the revoked key refused")
    assert all(k["revoked_at"] for k in orjson.loads(om("api-keys", "list", cid, "--json").stdout))


def test_refusals_are_one_line_naming_what_is_wrong():
    unknown = om("api-keys", "create", "cus_nobody", check=False)
    assert unknown.returncode == 1 and "no customer cus_nobody" in unknown.stderr
    blank = om("api-keys", "create", "cus_nobody", "--name", " ", check=False)
    assert blank.returncode == 2 and "name: must not be empty" in blank.stderr
    customer = orjson.loads(om("customers", "create", unique("Beta"), "--json").stdout)
    missing = om("api-keys", "revoke", customer["customer_id"], "key_nope", check=False)
    assert missing.returncode == 1 and "no API key key_nope" in missing.stderr
    assert "Traceback" not in unknown.stderr + blank.stderr + missing.stderr
