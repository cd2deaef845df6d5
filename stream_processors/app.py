"""The Faust application: one app, one consumer group, agents in their own modules.

- `wallets` (stream_processors/wallets.py): the single writer of every wallet, fed by
  `wallet.commands` and `wallet.debits`.
- `observe-usage-events`: counts what arrives on `usage.events`. It stands where the usage
  agent (dedupe → rate → route, docs/stream-processing.md) will feed `wallet.debits`.

Creating the app registers the topics' schemas in the schema registry (Postgres) and starts the
process's acknowledged producer for the agents' outputs.
"""

from __future__ import annotations

import faust
from prometheus_client import Counter
from psycopg_pool import ConnectionPool

from openmonetize import metrics
from openmonetize.catalog import Catalog
from openmonetize.kafka_producer import AckedProducer
from openmonetize.settings import Settings, get_settings
from schemas.registry import SchemaRegistry
from schemas.topics import topics
from stream_processors import codecs as worker_codecs
from stream_processors.wallets import WalletAgent

EVENTS_SEEN = Counter("openmonetize_worker_usage_events_seen_total", "Records read from usage.events")


def create_app(settings: Settings | None = None) -> faust.App:
    settings = settings or get_settings()
    app_id = settings.worker_app_id
    app = faust.App(
        app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        datadir=str(settings.stack_dir / "worker"),
        topic_replication_factor=settings.kafka_replication_factor,
        topic_partitions=settings.kafka_partitions,
        web_host="127.0.0.1",
        web_port=settings.worker_web_port,
        web_bind="127.0.0.1",
        autodiscover=False,
        # A worker killed -9 holds its partitions until the broker gives up on it: keep that short.
        broker_session_timeout=settings.worker_session_timeout_s,
        broker_heartbeat_interval=settings.worker_session_timeout_s / 4,
    )
    registry_topics = topics(settings)
    pool = ConnectionPool(settings.database_url, min_size=1, max_size=2, open=True, check=ConnectionPool.check_connection)
    codecs = worker_codecs.register(SchemaRegistry(pool), registry_topics)
    producer = AckedProducer(settings, client_id=f"{app_id}-worker")
    producer.start()

    catalog = Catalog(settings).start()  # tenant settings (the unfunded policy); burn tables and prices next

    wallets = WalletAgent(
        app, registry_topics, codecs, producer,
        policy_for=lambda customer_id: catalog.tenant(customer_id).unfunded_policy,
        bootstrap=settings.kafka_bootstrap,
    )
    app.agent(wallets.source, name="wallets")(wallets.run)

    usage_events = app.topic(registry_topics.usage_events.name, value_type=bytes, value_serializer="raw")

    @app.agent(usage_events, name="observe-usage-events")
    async def observe(stream):
        async for batch in stream.take(1000, within=1.0):
            EVENTS_SEEN.inc(len(batch))

    @app.page("/metrics")
    async def prometheus(web, request):
        body, _ = metrics.render()
        # aiohttp refuses a charset inside content_type; the exposition format is ASCII anyway.
        return web.bytes(body, content_type="text/plain; version=0.0.4")

    return app
