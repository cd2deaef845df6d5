"""The one place a topic's codec is made: writers register our schema under the topic's subject,
readers only look it up, and both cache the same low-cardinality string fields.

Which string fields are worth caching (`CACHED_FIELDS`, per schema file) is a property of the
schema, so it is said once here instead of at each process that builds its codecs.
"""

from __future__ import annotations

from schemas.codec import AvroCodec, SchemaResolver, schema_text
from schemas.registry import RegistryError
from schemas.topics import TopicSpec
from schemas.usage_event import LOW_CARDINALITY_FIELDS

CACHED_FIELDS: dict[str, tuple[str, ...]] = {
    "usage_event.avsc": LOW_CARDINALITY_FIELDS,
    "rated_usage.avsc": (*LOW_CARDINALITY_FIELDS, "wallet_id", "burn_table_id", "price_version"),
    "ledger_entry.avsc": ("customer_id", "wallet_id", "kind"),
    "wallet_balance.avsc": ("customer_id",),
}


def codec_with_id(schema_file: str, schema_id: int, resolver: SchemaResolver | None = None) -> AvroCodec:
    """The codec of one of our schemas, registered as `schema_id` (the producer client and the
    ingest edge learn the id themselves; the benchmarks pick one)."""
    return AvroCodec(schema_text(schema_file), schema_id, resolver, cached_fields=CACHED_FIELDS.get(schema_file, ()))


def writer_codec(registry, spec: TopicSpec) -> AvroCodec:
    """The codec of `spec`'s schema, registered (idempotently) under its subject in `registry`,
    which also resolves the ids of other writers' schemas when decoding."""
    return codec_with_id(spec.schema_file, registry.register(spec.subject, schema_text(spec.schema_file)), registry)


def reader_codec(resolver, spec: TopicSpec) -> AvroCodec:
    """A decoder into our schema of `spec` that registers nothing: every writer schema id is
    resolved through the registry (id 0, which no registered schema has, stands for ours when
    the subject does not hold it)."""
    try:
        schema_id, _ = resolver.lookup(spec.subject, schema_text(spec.schema_file))
    except RegistryError as exc:
        if exc.http_status != 404:
            raise
        schema_id = 0
    return codec_with_id(spec.schema_file, schema_id, resolver)
