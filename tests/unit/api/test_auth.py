"""The API-key cache's reaction to revocations (api/auth.py), without Postgres: lookups stubbed."""

import asyncio

import pytest

from api.auth import ApiKeys, KeyGuessing
from api.token_buckets import TokenBuckets
from openmonetize.stores import tenants


def cache(lookup) -> ApiKeys:
    keys = ApiKeys(pool=None, ttl_s=30, negative_ttl_s=5)
    keys._lookup = lookup
    return keys


def test_a_revocation_drops_the_key_at_once():
    owners = {"om_a": "cus_a", "om_b": "cus_b"}
    keys = cache(owners.get)

    async def run():
        assert await keys.customer_for("om_a") == "cus_a"
        assert await keys.customer_for("om_b") == "cus_b"
        del owners["om_a"]
        assert await keys.customer_for("om_a") == "cus_a"  # cached: Postgres not asked
        keys._revoked(tenants.hash_key("om_a"))
        assert await keys.customer_for("om_a") is None
        del owners["om_b"]
        keys._revoked(None)  # listening again after a gap: everything is looked up afresh
        assert await keys.customer_for("om_b") is None

    asyncio.run(run())


def test_a_lookup_racing_a_revocation_is_not_cached():
    answers = iter(["cus_a", None])
    keys = cache(lambda _key: (keys._revoked(tenants.hash_key("om_a")), next(answers))[1])

    async def run():
        assert await keys.customer_for("om_a") == "cus_a"  # read before the revocation committed
        assert await keys.customer_for("om_a") is None  # so it was not remembered

    asyncio.run(run())


def test_an_address_guessing_keys_is_held_back_and_known_keys_are_not():
    owners = {"om_real": "cus_a"}
    lookups = []
    clock = [0.0]
    keys = ApiKeys(pool=None, ttl_s=30, negative_ttl_s=5,
                   failed_lookups=TokenBuckets(rate_per_s=1, burst=3, clock=lambda: clock[0]))
    keys._lookup = lambda key: (lookups.append(key), owners.get(key))[1]

    async def run():
        assert await keys.customer_for("om_real", "10.0.0.1") == "cus_a"  # cached from here on
        for i in range(3):
            assert await keys.customer_for(f"om_guess{i}", "10.0.0.1") is None
        with pytest.raises(KeyGuessing) as held:
            await keys.customer_for("om_guess3", "10.0.0.1")
        assert held.value.wait_s == pytest.approx(1.0)
        assert "om_guess3" not in lookups  # held back before Postgres
        assert await keys.customer_for("om_real", "10.0.0.1") == "cus_a"  # a known key always answers
        assert await keys.customer_for("om_guess0", "10.0.0.1") is None  # remembered as unknown: no lookup
        assert await keys.customer_for("om_guess3", "10.0.0.2") is None  # another address has its own bucket
        assert await keys.customer_for("om_guess4") is None  # no address: not limited (internal callers)
        clock[0] += 1.0
        assert await keys.customer_for("om_guess5", "10.0.0.1") is None  # a token is back

    asyncio.run(run())
