"""The worker's codecs: each topic's schema registered (idempotently) in the schema registry,
so records carry a registered id and readers resolve any writer schema by id."""

from __future__ import annotations

import json
from dataclasses import dataclass

from schemas.avro_encoder import compile_encoder
from schemas.codec import AvroCodec, AvroProjection, schema_text
from schemas.registry_client import CodecRegistry
from schemas.topic_codecs import writer_codec
from schemas.topics import Topics
from stream_processors.wallet_step import DEBIT_FIELDS


class RatedFromEvent:
    """usage.rated records built as the event's own Avro body plus the rating's fields.

    rated_usage.avsc starts with every field of usage_event.avsc, in order, and an Avro record
    is its fields' encodings one after the other: so a rated record is the header, the body of
    the event as it came (when it was written with our current event schema) and the encoded
    tail (wallet, credits, versions, position). The usage agent then encodes 12 fields per
    event instead of 33. Any other writer schema falls back to encoding the whole record.
    """

    def __init__(self, usage_event: AvroCodec, rated: AvroCodec, cached_fields: tuple[str, ...] = ()):
        event_fields = [f["name"] for f in json.loads(schema_text("usage_event.avsc"))["fields"]]
        rated_schema = json.loads(schema_text("rated_usage.avsc"))
        if [f["name"] for f in rated_schema["fields"][:len(event_fields)]] != event_fields:
            raise AssertionError("rated_usage.avsc must begin with every usage_event.avsc field, in order")
        tail = {"type": "record", "name": "RatedTail", "namespace": rated_schema["namespace"],
                "fields": rated_schema["fields"][len(event_fields):]}
        self._tail = compile_encoder(tail, cached_fields)
        self._usage_event, self._rated_header = usage_event, rated.header
        self._rated = rated

    def encode(self, event_value: bytes, event: dict, rating: dict) -> bytes:
        """The usage.rated value of the event decoded from `event_value` and the rating's fields
        (the tail). The whole record (the two merged) is built only to encode it whole."""
        if self._tail is not None and event_value[:5] in self._usage_event.own_headers:
            return self._rated_header + event_value[5:] + self._tail(rating)
        return self._rated.encode({**event, **rating})


@dataclass(frozen=True)
class Codecs:
    usage_event: AvroCodec
    rated: AvroCodec
    debit: AvroProjection  # a rated record as the wallet agent reads it: wallet_step.DEBIT_FIELDS
    ledger_entry: AvroCodec
    wallet_command: AvroCodec
    wallet_balance: AvroCodec
    dlq: AvroCodec
    rated_from_event: RatedFromEvent


def register(registry: CodecRegistry, registry_topics: Topics) -> Codecs:
    def codec(spec) -> AvroCodec:
        return writer_codec(registry, spec)

    usage_event = codec(registry_topics.usage_events)
    rated = codec(registry_topics.usage_rated)
    return Codecs(
        usage_event=usage_event,
        rated=rated,
        debit=rated.projection(DEBIT_FIELDS),
        ledger_entry=codec(registry_topics.ledger_entries),
        wallet_command=codec(registry_topics.wallet_commands),
        wallet_balance=codec(registry_topics.wallet_balances),
        dlq=codec(registry_topics.usage_dlq),
        rated_from_event=RatedFromEvent(usage_event, rated, rated.cached_fields),
    )
