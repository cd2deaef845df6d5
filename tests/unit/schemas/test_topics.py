from openmonetize.settings import Settings
from schemas.topics import topics


def test_registry_takes_names_and_partitions_from_settings():
    registry = topics(Settings(_env_file=None, topic_usage_events="acme.usage", kafka_partitions=12))
    assert registry.usage_events.name == "acme.usage"
    assert {t.partitions for t in registry.all() if t is not registry.billing_catalog} == {12}
    assert len({t.name for t in registry.all()}) == 9


def test_balances_are_compacted_and_the_raw_stream_is_kept_long():
    settings = Settings(_env_file=None)
    registry = topics(settings)
    assert registry.wallet_balances.config == {"cleanup.policy": "compact"}
    assert registry.usage_events.subject == "usage.events-value"
    assert registry.usage_events.config["retention.ms"] == str(settings.usage_events_retention_ms)
    assert settings.usage_events_retention_ms >= 35 * 24 * 3600 * 1000  # at least the accepted event age


def test_the_billing_catalog_is_one_compacted_json_partition():
    catalog = topics(Settings(_env_file=None, kafka_partitions=12)).billing_catalog
    assert (catalog.name, catalog.partitions, catalog.schema_file) == ("billing.catalog", 1, "")
    assert catalog.config == {"cleanup.policy": "compact"}
