"""The API-key cache's reaction to revocations (api/auth.py), without Postgres: lookups stubbed."""

import asyncio

from api import tenants
from api.auth import ApiKeys


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
