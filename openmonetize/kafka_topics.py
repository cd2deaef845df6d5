"""The project's topics made to match their declarations (schemas/topics.py) on a broker: created
when missing, partitions added where a setting asks for more, configurations aligned. Used by
`stack up`, `openmonetize topics ensure`, the worker (its tables' changelogs) and the tools."""

from __future__ import annotations

import time

from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)

from openmonetize.logs import get_logger
from schemas.topics import TopicSpec

log = get_logger(__name__)


class TopicError(RuntimeError):
    """A topic could not be created or did not get a leader."""


def ensure_topics(admin: AdminClient, specs: list[TopicSpec]) -> list[str]:
    """Create missing topics, add partitions where a setting asks for more. Idempotent."""
    existing = admin.list_topics(timeout=10).topics
    missing = [s for s in specs if s.name not in existing]
    if missing:
        futures = admin.create_topics(
            [NewTopic(s.name, s.partitions, s.replication_factor, config=s.config) for s in missing],
            operation_timeout=30,
        )
        for name, future in futures.items():
            try:
                future.result()
            except Exception as exc:  # noqa: BLE001
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise TopicError(f"could not create topic {name}: {exc}") from exc
    grow = [
        NewPartitions(s.name, s.partitions)
        for s in specs
        if s.name in existing and len(existing[s.name].partitions) < s.partitions
    ]
    if grow:
        for name, future in admin.create_partitions(grow).items():
            future.result()
            log.info("kafka_topic_partitions_added", topic=name)
    _align_configs(admin, [s for s in specs if s.name in existing])
    created = [s.name for s in missing]
    if created:
        _wait_for_leaders(admin, created)
        log.info("kafka_topics_created", topics=created)
    return created


def _wait_for_leaders(admin: AdminClient, names: list[str], timeout_s: float = 30.0) -> None:
    """Return once every partition of the new topics has a leader: a client asking for offsets
    right after creation otherwise gets NOT_LEADER_FOR_PARTITION."""
    def led() -> bool:
        found = admin.list_topics(timeout=10).topics
        return all(n in found and found[n].error is None and found[n].partitions
                   and all(p.leader >= 0 for p in found[n].partitions.values()) for n in names)

    deadline = time.monotonic() + timeout_s
    while not led():
        if time.monotonic() > deadline:
            raise TopicError(f"new topics still without a leader after {timeout_s:g}s: {names}")
        time.sleep(0.1)


def _align_configs(admin: AdminClient, specs: list[TopicSpec]) -> None:
    """Apply declared topic configs that differ on the broker (e.g. a changed retention setting)."""
    if not specs:
        return
    resources = [ConfigResource(ConfigResource.Type.TOPIC, s.name) for s in specs]
    current = {res.name: future.result() for res, future in admin.describe_configs(resources).items()}
    changes = []
    for spec in specs:
        entries = [
            ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)
            for key, value in spec.config.items()
            if key not in current[spec.name] or current[spec.name][key].value != value
        ]
        if entries:
            changes.append(ConfigResource(ConfigResource.Type.TOPIC, spec.name, incremental_configs=entries))
    if not changes:
        return
    for resource, future in admin.incremental_alter_configs(changes).items():
        future.result()
        log.info("kafka_topic_config_aligned", topic=resource.name)
