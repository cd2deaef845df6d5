"""Create the tables' changelog topics before Faust starts.

Left to Faust, a changelog topic is created while the worker starts, and its consumer may take
the metadata snapshot of its subscription in between: the topic is then known with 0
partitions, and every table write fails (`PartitionsMismatch: ... changelog topic has 0
partitions` in the usage agent, `TypeError` in aiokafka's partitioner in the wallet agent),
batch after batch, until the next periodic metadata refresh minutes later. That happened on
every fresh stack, whose first events then waited minutes. Created here first, with the
configuration Faust would give them, the topics exist with their partitions before Faust's
first metadata request; Faust then finds them and goes on.
"""

from __future__ import annotations

import faust
from confluent_kafka.admin import AdminClient
from mode.utils.times import want_seconds

from openmonetize.kafka_topics import ensure_topics
from schemas.topics import TopicSpec


def changelog_specs(app: faust.App) -> list[TopicSpec]:
    """The changelog topic of every table of `app`, as Faust's aiokafka driver would create it."""
    specs = []
    for table in app.tables.values():
        topic = table.changelog_topic
        config: dict[str, str] = {}
        flags = sorted(flag for flag, on in (("compact", topic.compacting), ("delete", topic.deleting)) if on)
        if flags:
            config["cleanup.policy"] = ",".join(flags)
        if topic.retention:
            config["retention.ms"] = str(int(want_seconds(topic.retention) * 1000))
        config.update({key: str(value) for key, value in (topic.config or {}).items()})
        specs.append(TopicSpec(topic.get_topic_name(), table.partitions or app.conf.topic_partitions,
                               app.conf.topic_replication_factor, "", config))
    return specs


def create_changelogs(app: faust.App, bootstrap: str) -> list[str]:
    """Create the missing changelog topics (and align the others' configuration); their names."""
    return ensure_topics(AdminClient({"bootstrap.servers": bootstrap}), changelog_specs(app))
