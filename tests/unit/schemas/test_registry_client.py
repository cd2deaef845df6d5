"""open_registry: the one place codecs get their registry from, ours or another."""

from __future__ import annotations

import pytest

from openmonetize.settings import Settings
from schemas.registry import SchemaRegistry
from schemas.registry_client import HttpRegistry, OneConnection, RegistryUnreachable, open_registry


def test_empty_url_is_our_postgres_store_on_the_pool_given():
    pool = OneConnection(None)
    registry = open_registry(Settings(schema_registry_url=""), pool)
    assert isinstance(registry, SchemaRegistry) and registry.pool is pool


def test_a_url_is_that_registry_through_the_stock_client_and_an_unanswered_call_names_it():
    settings = Settings(schema_registry_url="http://127.0.0.1:9/", schema_registry_basic_auth_user_info="u:p")
    registry = open_registry(settings, OneConnection(None), max_retries=0)
    assert isinstance(registry, HttpRegistry) and registry.url == "http://127.0.0.1:9"
    with pytest.raises(RegistryUnreachable, match=r"schema registry at http://127\.0\.0\.1:9 is unreachable"):
        registry.schema_by_id(1)


def test_a_producer_url_goes_over_http_even_when_ours_is_the_default():
    registry = open_registry(Settings(schema_registry_url=""), url="http://127.0.0.1:9", max_retries=0)
    assert isinstance(registry, HttpRegistry) and registry.url == "http://127.0.0.1:9"
