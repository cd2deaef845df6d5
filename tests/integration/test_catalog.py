"""The billing catalog topic: what a separate reader sees, and `catalog sync`."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import httpx
import psycopg

from openmonetize.catalog.view import Catalog

RULES = {"default": {"input_tokens": "1", "per_unit": 1000}}


def test_a_separate_reader_sees_a_new_version_within_a_second(settings, tenant):
    headers = {"X-OM-Api-Key": tenant.api_key}
    created = httpx.post(f"{settings.api_url}/v1/burn-tables", json={"name": "t", "rules": RULES}, headers=headers)
    table_id = created.json()["burn_table_id"]
    reader = Catalog(settings).start()  # what a stream worker holds
    try:
        assert reader.wait_until_current(30)
        now = datetime.now(timezone.utc)
        assert reader.burn_table_at(tenant.customer_id, now).version == 1

        response = httpx.post(f"{settings.api_url}/v1/burn-tables/{table_id}/versions", headers=headers,
                              json={"rules": {"default": {"input_tokens": "2", "per_unit": 1000}}})
        assert response.status_code == 201, response.text
        returned = time.monotonic()
        assert reader.wait_until_current(1.0)
        assert time.monotonic() - returned < 1.0
        table = reader.burn_table_at(tenant.customer_id, datetime.now(timezone.utc))
        assert (table.burn_table_id, table.version, str(table.rules["default"].input_tokens)) == (table_id, 2, "2")
        assert reader.burn_table_at(tenant.customer_id, now - timedelta(days=1)).version == 1  # the first reaches back
        assert reader.decode_errors == 0
    finally:
        reader.close()


def test_tenant_settings_reach_readers_through_sync_and_sync_twice_is_harmless(settings, tenant):
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO tenant_settings (customer_id, credit_price_usd, unfunded_policy) VALUES (%s, 0.02, 'reject')",
            (tenant.customer_id,),
        )
    for _ in range(2):
        done = subprocess.run([sys.executable, "-m", "openmonetize", "catalog", "sync"],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("published ")
    reader = Catalog(settings).start()
    try:
        assert reader.wait_until_current(30)
        tenant_settings = reader.tenant(tenant.customer_id)
        assert (str(tenant_settings.credit_price_usd), tenant_settings.unfunded_policy) == ("0.02", "reject")
        assert reader.price_at(tenant.customer_id, "openai", "gpt-4o", datetime.now(timezone.utc)) is not None
    finally:
        reader.close()


def test_import_prices_twice_is_idempotent(settings):
    # Today's snapshot (what `stack up` imported): importing another date would change the stack's prices.
    runs = [subprocess.run([sys.executable, "-m", "openmonetize", "admin", "import-prices"],
                           capture_output=True, text=True, timeout=120) for _ in range(2)]
    assert all(run.returncode == 0 for run in runs), runs[-1].stderr
    assert " 0 new prices" in runs[1].stdout
