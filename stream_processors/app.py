"""The Faust application: one app, one consumer group, agents in their own modules.

- `wallets` (stream_processors/wallets.py): the single writer of every wallet, fed by
  `wallet.commands` and `wallet.debits`.
- `usage` (stream_processors/usage.py): decodes, deduplicates, rates and routes `usage.events`
  into `wallet.debits`.

Creating the app registers the topics' schemas in the schema registry (Postgres), starts the
process's acknowledged producer for the agents' outputs and its views of the billing catalog and
of `wallet.balances` (which wallets exist, for routing); the first batch waits until the views
are current.
"""

from __future__ import annotations

import asyncio
import os
import socket

import faust

from openmonetize import metrics, wallet_directory
from openmonetize.catalog.view import Catalog
from openmonetize.kafka_producer import AckedProducer
from openmonetize.settings import Settings, get_settings
from schemas.registry_client import open_registry
from schemas.topics import topics
from stream_processors import codecs as worker_codecs
from stream_processors import lag as worker_lag
from stream_processors import memory_probe, stores
from openmonetize.compacted_view import CompactedView
from openmonetize.cycle_collector import freeze_long_lived
from openmonetize.logs import get_logger
from openmonetize.wallet_directory import WalletDirectory
from stream_processors.outputs import OUTPUT_FAILURE_EXIT
from stream_processors.usage import UsageAgent
from stream_processors.wallets import WalletAgent

log = get_logger(__name__)
VIEW_WARMUP_S = 60.0
STREAM_CHECK_OFF_S = 10 * 365 * 24 * 3600.0


def group_instance_id(settings: Settings) -> str | None:
    """The worker's static group membership id (KIP-345): one per process slot of a host (its web
    port), the same across restarts. A worker killed -9 and started again rejoins as itself and
    gets its partitions back without a rebalance, instead of the broker holding them for the
    session timeout. The price: a worker stopped for good keeps its partitions idle for that
    timeout too (a static member does not leave the group), before the others take them over.
    On by default (WORKER_STATIC_MEMBERSHIP; docs/development/stream-processing.md). A static
    member that rejoins gets its stored assignment back without one being computed: a changed
    WORKER_STANDBY_REPLICAS takes effect at the group's next real rebalance."""
    if not settings.worker_static_membership:
        return None
    return f"{settings.worker_app_id}@{socket.gethostname()}:{settings.worker_web_port}"


def create_app(settings: Settings | None = None) -> faust.App:
    settings = settings or get_settings()
    app_id = settings.worker_app_id
    # One directory per worker process (RocksDB locks its files): the web port is unique per host.
    # (Not `worker-<port>` any more: tables written there with a TTL cannot be read without it.)
    datadir = settings.stack_dir / "tables" / f"worker-{settings.worker_web_port}"
    datadir.mkdir(parents=True, exist_ok=True)  # Faust creates only its own subdirectories
    app = faust.App(
        app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        # Both tables (the dedupe table and the wallets). Set here, not per table: a table's
        # `store="rocksdb://"` is an empty yarl URL, falsy, and Faust then used the app's store.
        # `rocksdb://` is Faust's RocksDB store with one memory budget per process (stores.py).
        store=stores.store_url(settings),
        datadir=str(datadir),
        topic_replication_factor=settings.kafka_replication_factor,
        topic_partitions=settings.kafka_partitions,
        web_host=settings.metrics_host,
        web_port=settings.worker_web_port,
        web_bind=settings.metrics_host,
        autodiscover=False,
        # A worker killed -9 holds its partitions until the broker gives up on it: keep that short.
        broker_session_timeout=settings.worker_session_timeout_s,
        # With WORKER_STATIC_MEMBERSHIP, a worker restarted in its place takes them back at once.
        consumer_group_instance_id=group_instance_id(settings),
        broker_heartbeat_interval=settings.worker_session_timeout_s / 4,
        # Faust's own producer writes little now (the agents write their changelogs through the
        # acknowledged librdkafka producer); batched anyway.
        producer_linger=0.02,
        # Each worker keeps this many standby copies of other workers' table partitions, read
        # from their changelogs through Faust's per-record path: fast failover, for CPU.
        table_standby_replicas=settings.worker_standby_replicas,
        producer_max_batch_size=512 * 1024,
        # The source partitions are paused in Faust and read by the batch sources: Faust's
        # livelock check would report them as streams that never started, every few seconds.
        # Progress is watched by openmonetize_worker_lag instead (from the applied markers).
        stream_processing_timeout=STREAM_CHECK_OFF_S,
    )
    registry_topics = topics(settings)
    codecs = worker_codecs.register(open_registry(settings), registry_topics)
    producer = AckedProducer(settings, client_id=f"{app_id}-worker", timeout_ms=settings.worker_output_timeout_ms,
                             linger_ms=settings.worker_linger_ms)
    producer.start()

    catalog = Catalog(settings).start()
    balances = CompactedView(settings.kafka_bootstrap, registry_topics.wallet_balances.name, decode=lambda _: True).start()
    directory = WalletDirectory(settings.kafka_bootstrap, registry_topics.wallet_directory.name).start()

    def warm_up_views() -> None:
        for view in (catalog, balances, directory):
            if not view.wait_until_current(VIEW_WARMUP_S):
                log.warning("view not current at start; rating and routing use what was read so far",
                            view=type(view).__name__)

    wallets = WalletAgent(
        app, registry_topics, codecs, producer,
        policy_for=lambda customer_id: catalog.tenant(customer_id).unfunded_policy,
        bootstrap=settings.kafka_bootstrap, batch_size=settings.worker_wallet_batch_size,
    )
    app.agent(wallets.source, name="wallets")(wallets.run)

    usage = UsageAgent(
        app, registry_topics, codecs, producer, catalog,
        wallet_exists=wallet_directory.exists(directory, balances.get),
        wallets_catch_up=directory.wait_until_current,
        settings=settings,
    )
    app.agent(usage.source, name="usage")(usage.run)
    readers = {topic: agent.reader for agent in (usage, wallets) for topic in agent.applied.topics}
    worker_lag.install(app, [usage.applied, wallets.applied],
                       highwater=lambda tp: readers[tp.topic].highwater(tp.topic, tp.partition))
    memory_probe.start(app, settings.worker_memory_probe_s)

    @app.task
    async def read_sources() -> None:
        """Each agent's batch loop (batch_source.py), once the views have been read to their end
        (meanwhile Faust joins the group and recovers the tables: a restart overlaps both); a
        loop that fails exits the worker, whose supervisor restarts it, and the batch is read
        again from the markers."""
        try:
            await asyncio.to_thread(warm_up_views)
            freeze_long_lived()
            await asyncio.gather(usage.reader.run(), wallets.reader.run())
        except Exception:  # noqa: BLE001 - whatever it was, the worker must start over from the markers
            log.exception("a batch source failed; exiting to read again from the applied offsets")
            os._exit(OUTPUT_FAILURE_EXIT)

    @app.on_partitions_revoked.connect
    async def stop_reading(sender, revoked, **kwargs) -> None:
        """Before the group rebalances: finish the batch in hand and give the partitions up."""
        await asyncio.gather(usage.reader.stop(), wallets.reader.stop())

    @app.page("/metrics")
    async def prometheus(web, request):
        body, _ = metrics.render()
        # aiohttp refuses a charset inside content_type; the exposition format is ASCII anyway.
        return web.bytes(body, content_type="text/plain; version=0.0.4")

    return app
