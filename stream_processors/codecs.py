"""The worker's codecs: each topic's schema registered (idempotently) in the schema registry,
so records carry a registered id and readers resolve any writer schema by id."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.codec import AvroCodec, schema_text
from schemas.registry import SchemaRegistry
from schemas.topics import TopicSpec, Topics
from schemas.usage_event import LOW_CARDINALITY_FIELDS


@dataclass(frozen=True)
class Codecs:
    usage_event: AvroCodec
    rated: AvroCodec
    ledger_entry: AvroCodec
    wallet_command: AvroCodec
    wallet_balance: AvroCodec
    dlq: AvroCodec


def register(registry: SchemaRegistry, registry_topics: Topics) -> Codecs:
    def codec(spec: TopicSpec, cached: tuple[str, ...] = ()) -> AvroCodec:
        text = schema_text(spec.schema_file)
        return AvroCodec(text, registry.register(spec.subject, text), registry, cached_fields=cached)

    rated_cached = (*LOW_CARDINALITY_FIELDS, "wallet_id", "burn_table_id", "price_version")
    return Codecs(
        usage_event=codec(registry_topics.usage_events, LOW_CARDINALITY_FIELDS),
        rated=codec(registry_topics.usage_rated, rated_cached),
        ledger_entry=codec(registry_topics.ledger_entries, ("customer_id", "wallet_id", "kind")),
        wallet_command=codec(registry_topics.wallet_commands),
        wallet_balance=codec(registry_topics.wallet_balances, ("customer_id",)),
        dlq=codec(registry_topics.usage_dlq),
    )
