"""The topic registry: the one place that names every project topic, its value schema and how
it is created.

Nobody else spells a topic string: code asks `topics(settings).usage_events.name`. Names and
partition counts are settings (see openmonetize/settings.py); the per-topic configuration here
says what each topic is for (the raw stream is kept long because it is the replay source; the
balances topic is compacted because readers only need the latest balance per wallet).

Every topic carries Avro (`schema_file` in schemas/avro/) except the internal billing catalog,
which carries JSON (`schema_file` empty; its codec is openmonetize/catalog/json_codec.py): it is small,
read whole by every process, and written and read only by this project.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # a caller passes the settings in: schemas/ sits below openmonetize/ (docs/development/layers.md)
    from openmonetize.settings import Settings

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    schema_file: str  # in schemas/avro/; "" for a topic that carries JSON (the billing catalog)
    config: dict[str, str] = field(default_factory=dict)

    @property
    def subject(self) -> str:
        """Schema registry subject of the record values (Confluent's TopicNameStrategy)."""
        return f"{self.name}-value"


@dataclass(frozen=True)
class Topics:
    usage_events: TopicSpec
    usage_rated: TopicSpec
    ledger_entries: TopicSpec
    wallet_commands: TopicSpec
    wallet_balances: TopicSpec
    usage_dlq: TopicSpec
    wallet_debits: TopicSpec
    billing_catalog: TopicSpec
    wallet_directory: TopicSpec

    def all(self) -> list[TopicSpec]:
        return [
            self.usage_events,
            self.usage_rated,
            self.ledger_entries,
            self.wallet_commands,
            self.wallet_balances,
            self.usage_dlq,
            self.wallet_debits,
            self.billing_catalog,
            self.wallet_directory,
        ]


def topics(settings: Settings) -> Topics:
    def spec(name: str, schema_file: str, **config: str) -> TopicSpec:
        return TopicSpec(name, settings.kafka_partitions, settings.kafka_replication_factor, schema_file, config)

    return Topics(
        usage_events=spec(
            settings.topic_usage_events, "usage_event.avsc", **{"retention.ms": str(settings.usage_events_retention_ms)}
        ),
        usage_rated=spec(settings.topic_usage_rated, "rated_usage.avsc", **{"retention.ms": str(30 * DAY_MS)}),
        ledger_entries=spec(settings.topic_ledger_entries, "ledger_entry.avsc", **{"retention.ms": str(90 * DAY_MS)}),
        wallet_commands=spec(
            settings.topic_wallet_commands, "wallet_command.avsc", **{"retention.ms": str(90 * DAY_MS)}
        ),
        wallet_balances=spec(settings.topic_wallet_balances, "wallet_balance.avsc", **{"cleanup.policy": "compact"}),
        usage_dlq=spec(settings.topic_usage_dlq, "dlq_record.avsc", **{"retention.ms": str(90 * DAY_MS)}),
        # Co-partitioned with wallet.commands (same count, same key): one partition owns a wallet.
        wallet_debits=spec(settings.topic_wallet_debits, "rated_usage.avsc", **{"retention.ms": str(7 * DAY_MS)}),
        # One partition: every process reads all of it, and one partition keeps it in write order.
        billing_catalog=TopicSpec(
            settings.topic_billing_catalog, 1, settings.kafka_replication_factor, "", {"cleanup.policy": "compact"}
        ),
        # Compacted, key wallet_id: the wallets that exist, written before their first command
        # is acknowledged; usage routing reads it whole (openmonetize/wallet_directory.py).
        wallet_directory=spec(
            settings.topic_wallet_directory, "wallet_directory_entry.avsc", **{"cleanup.policy": "compact"}
        ),
    )
