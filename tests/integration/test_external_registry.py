"""SCHEMA_REGISTRY_URL points the whole pipeline at another Confluent-compatible registry.

The other registry is a second instance of ours: an API process on another port with a
Postgres database of its own (its own schema ids) and its own operator key. An isolated pipeline
(own topics, a worker and a ledger sink of its own) runs with the setting pointed there; an
event produced through the stock-client path (UsageProducer) is rated, debited and lands in the
ledger, every record on the way carries the second registry's ids, the tools (replay, the DLQ
reader, reconcile) resolve through it, and the stack's own registry never hears of these subjects.
"""

from __future__ import annotations

import secrets
import struct
from datetime import datetime, timezone
from decimal import Decimal

import psycopg
import pytest
from confluent_kafka.admin import AdminClient

from openmonetize import migrations, wallet_ids
from openmonetize.dlq_views import session as dlq_session
from openmonetize.kafka_topics import ensure_topics
from openmonetize.rebilling.codecs import replay_codecs
from openmonetize.reconcile import reconcile
from producers.usage_producer import UsageProducer
from schemas.codec import schema_text
from schemas.registry import SchemaRegistry
from schemas.registry_client import HttpRegistry
from schemas.topics import topics
from tests.conftest import eventually, unique
from tests.integration.api_process import api_process
from tests.integration.isolated import IsolatedPipeline
from tests.integration.support import read_topic

FIRST_ID = 700_000  # the second registry's ids start here: no record can carry one of the stack's by chance


@pytest.fixture
def second_database(settings):
    """A Postgres database of its own, migrated: the second registry's store."""
    name = unique("reg2")
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = settings.database_url.rsplit("/", 1)[0] + f"/{name}"
    migrations.apply_postgres(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"ALTER TABLE registry_schemas ALTER COLUMN id RESTART WITH {FIRST_ID}")
    yield url
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


def schema_id_of(value: bytes) -> int:
    magic, schema_id = struct.unpack_from(">bI", value)
    assert magic == 0
    return schema_id


def test_the_pipeline_runs_on_a_second_registry(settings, tmp_path, second_database):
    key = secrets.token_hex(16)
    with SecondRegistry(settings, tmp_path, second_database, key) as (pipeline, registry_url):
        customer = unique("cus")
        pipeline.burn_table(customer, {"default": {"input_tokens": "1", "output_tokens": "4", "per_unit": 1000}})
        wallet = wallet_ids.customer_wallet(customer)
        pipeline.command(wallet, customer, "purchase", "100")
        pipeline.flush()
        pipeline.start_worker()
        pipeline.start_service("ledger-sink", "sink-ledger", {
            "LEDGER_SINK_GROUP": unique("ledger-sink"), "LEDGER_SINK_METRICS_PORT": "0", "LEDGER_SINK_BATCH_MS": "50"})

        with UsageProducer(customer, settings=pipeline.settings, topic=pipeline.topics.usage_events.name) as producer:
            producer.produce({"event_id": "evt-1", "user_id": "u1", "event_type": "TOKEN_USAGE", "feature_id": "chat",
                              "provider": "openai", "model": "gpt-4o", "input_tokens": 1500, "output_tokens": 500,
                              "timestamp": datetime.now(timezone.utc).isoformat()})
        assert producer.delivered == 1

        def debited():
            with psycopg.connect(settings.database_url) as conn:
                return conn.execute("SELECT amount FROM ledger_entries WHERE wallet_id = %s AND event_id = 'evt-1'"
                                    " AND kind = 'usage_debit'", (wallet,)).fetchone()

        amount = eventually(debited, timeout_s=90, interval_s=0.2, what="the event's debit in the Postgres ledger")[0]
        assert abs(amount) == Decimal("3.5")  # 1,500 input tokens at 1 credit per 1,000, 500 output at 4

        second = HttpRegistry(registry_url)
        specs = (pipeline.topics.usage_events, pipeline.topics.usage_rated, pipeline.topics.ledger_entries)
        ids = {spec.name: second.lookup(spec.subject, schema_text(spec.schema_file))[0] for spec in specs}
        assert min(ids.values()) >= FIRST_ID
        for topic, schema_id in ids.items():
            found = {schema_id_of(m.value()) for m in read_topic(settings.kafka_bootstrap, topic)}
            assert found == {schema_id}, f"{topic}: ids {found}, the second registry's is {schema_id}"

        ours = SchemaRegistry(pipeline.pool)
        assert [s for s in ours.subjects(deleted=True) if s.startswith(pipeline.topics.usage_events.name.split(".")[0])] == []

        # the tools open the same registry: replay's codecs, the DLQ reader, reconcile
        assert replay_codecs(pipeline.settings, pipeline.topics).usage_event.schema_id == ids[specs[0].name]
        with dlq_session(pipeline.settings) as dlq:
            assert dlq.codec.schema_id == second.lookup(pipeline.topics.usage_dlq.subject,
                                                        schema_text(pipeline.topics.usage_dlq.schema_file))[0]
            assert dlq.codec.schema_id >= FIRST_ID
        report = reconcile(pipeline.settings, customer_id=customer, source="postgres")
        assert (report.wallets, report.mismatches) == (1, []), report


class SecondRegistry:
    """The second registry (an API process on its own database) and a pipeline pointed at it."""

    def __init__(self, settings, tmp_path, database_url: str, key: str):
        self.settings, self.tmp_path, self.database_url, self.key = settings, tmp_path, database_url, key

    def __enter__(self):
        self.pipeline = None
        topics_env = IsolatedPipeline.topic_env(unique("w"))
        # the pipeline's topics exist before the second API reads them (its views wait for them)
        own = self.settings.model_copy(update={**{k.lower(): v for k, v in topics_env.items()}, "kafka_partitions": 3})
        ensure_topics(AdminClient({"bootstrap.servers": self.settings.kafka_bootstrap}), topics(own).all())
        self._api = api_process(self.tmp_path / "api2.log", DATABASE_URL=self.database_url,
                                SCHEMA_REGISTRY_OPERATOR_KEY=self.key, PLANS_SCHEDULER_INTERVAL_S="0",
                                **topics_env)
        url = self._api.__enter__()
        try:
            self.pipeline = IsolatedPipeline(self.settings, self.tmp_path, {
                **topics_env, "SCHEMA_REGISTRY_URL": url, "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": f"operator:{self.key}"})
        except BaseException:
            self._api.__exit__(None, None, None)
            raise
        return self.pipeline, url

    def __exit__(self, *exc):
        try:
            if self.pipeline is not None:
                self.pipeline.stop()
        finally:
            self._api.__exit__(*exc)
