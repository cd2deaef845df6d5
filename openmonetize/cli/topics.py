"""`openmonetize topics create`: the Kafka topics of schemas/topics.py on a cluster."""

from __future__ import annotations

import click

from openmonetize.cli.root import Group
from openmonetize.settings import get_settings


@click.group("topics", cls=Group)
def topics_group() -> None:
    """The project's Kafka topics, as the registry in schemas/topics.py declares them."""


@topics_group.command("create")
def topics_create() -> None:
    """Create the missing topics (partitions KAFKA_PARTITIONS, replication KAFKA_REPLICATION_FACTOR,
    retention and compaction as declared), add partitions where the setting asks for more, and
    align changed configs. Idempotent: what `stack up` does, for a cluster it does not run."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    from openmonetize.kafka_topics import ensure_topics
    from schemas.topics import topics

    settings = get_settings()
    try:
        created = ensure_topics(AdminClient({"bootstrap.servers": settings.kafka_bootstrap}), topics(settings).all())
    except KafkaException as exc:
        raise click.ClickException(f"Kafka at KAFKA_BOOTSTRAP={settings.kafka_bootstrap} did not answer: {exc}") from exc
    click.echo(f"created {', '.join(created)}" if created else "every topic exists")
