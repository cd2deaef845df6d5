"""Integration tests run against the real test stack (Kafka, Postgres, ClickHouse, API, worker).

`make test` starts it with deploy/test.env and stops it afterwards. Run against a stack you
started yourself with the same environment (`OM_ENV_FILE=deploy/test.env`).
"""

from __future__ import annotations

import httpx
import pytest

from openmonetize.settings import Settings, get_settings


def pytest_collection_modifyitems(items):
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def settings() -> Settings:
    settings = get_settings()
    try:
        httpx.get(f"{settings.api_url}/health", timeout=2.0).raise_for_status()
    except httpx.HTTPError as exc:
        pytest.exit(
            f"the test stack does not answer at {settings.api_url} ({exc}); run the suite with `make test`",
            returncode=2,
        )
    return settings


@pytest.fixture
def tenant(settings):
    """A fresh tenant (customer and API key) of its own."""
    from tests.integration.support import new_tenant

    return new_tenant(settings)


@pytest.fixture
def tail(settings, tenant):
    """What lands on usage.events for `tenant` from now on."""
    from tests.integration.support import UsageTail

    tail = UsageTail(settings, tenant.customer_id)
    yield tail
    tail.close()
