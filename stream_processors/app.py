"""The Faust application: one app, one consumer group, agents in their own modules.

Until the dedupe/rate/debit agents land (stream-processor issue) the worker runs a single
agent that observes `usage.events`, so the stack's worker process is real: it joins the group,
consumes, and reports what it saw on its /metrics page.
"""

from __future__ import annotations

import faust
from prometheus_client import Counter

from openmonetize import metrics
from openmonetize.settings import Settings, get_settings
from schemas.topics import topics

EVENTS_SEEN = Counter("openmonetize_worker_usage_events_seen_total", "Records read from usage.events")


def create_app(settings: Settings | None = None) -> faust.App:
    settings = settings or get_settings()
    app = faust.App(
        "openmonetize",
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        datadir=str(settings.stack_dir / "worker"),
        topic_replication_factor=settings.kafka_replication_factor,
        topic_partitions=settings.kafka_partitions,
        web_host="127.0.0.1",
        web_port=settings.worker_web_port,
        web_bind="127.0.0.1",
        autodiscover=False,
    )
    registry = topics(settings)
    usage_events = app.topic(registry.usage_events.name, value_type=bytes, value_serializer="raw")

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
