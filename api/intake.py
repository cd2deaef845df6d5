"""The step every HTTP ingestion route shares: checked events → Avro records on usage.events,
acknowledged by Kafka → the answer to the client.

Routes (JSON batches, CloudEvents) only parse their envelope into candidates: a decoded
`UsageEventIn`, or an `Invalid` one carrying the decode error. `Intake.accept` applies the
contract's rules (`schemas.usage_event.to_record`), refuses duplicates within the request,
encodes (Confluent-framed Avro, the schema id the registry gave for `usage.events-value`),
produces everything in one pass and awaits every acknowledgement (`openmonetize.kafka_producer`).

Partial batches — the decision:

- each event is judged on its own; valid events are accepted, invalid ones are listed in
  `rejected` with their index, event_id (null if unreadable), field and reason;
- 202 when every event was accepted, 207 when some were rejected, 400 when none was accepted;
  the body is always `{"accepted": N, "rejected": [...]}`;
- an event naming another tenant's `customer_id` fails the WHOLE request with 403 and nothing
  is produced: a key used for another tenant's data is a client bug or an attack;
- a repeated event_id within one request: the first is accepted, later ones are rejected
  ("duplicate event_id in this batch"); repeats across requests are the stream dedupe's job;
- "accepted" means acknowledged by Kafka (acks=all). If Kafka fails part-way the answer is 503
  with `Retry-After`, and `accepted` says how many events were acknowledged before the failure:
  those ARE accepted. Retrying the whole request is safe, since dedupe downstream drops the
  repeats by event_id.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone

from fastapi import Response
from prometheus_client import Counter

from api.errors import ApiError, json_response
from openmonetize.kafka_producer import AckedProducer
from openmonetize.logs import get_logger
from openmonetize.settings import Settings
from schemas.codec import AvroCodec, schema_text
from schemas.topic_codecs import codec_with_id
from schemas.topics import topics
from schemas.usage_event import EventError, EventLimits, ForeignCustomerError, UsageEventIn, to_record

log = get_logger(__name__)

DUPLICATE = "duplicate event_id in this batch"
_CONTRACT_FIELDS = frozenset(UsageEventIn.__struct_fields__)

ACCEPTED = Counter("openmonetize_ingest_events_accepted_total", "Events acknowledged by Kafka", ["source"])
REJECTED = Counter(
    "openmonetize_ingest_events_rejected_total",
    "Events refused at the edge, by the contract field to blame (other: not a contract field)",
    ["source", "field"],
)
UNAVAILABLE = Counter(
    "openmonetize_ingest_unavailable_total", "Ingest requests answered 503, by cause", ["cause"]
)


@dataclass(frozen=True)
class Invalid:
    """An event that did not decode; what could still be read of it."""

    error: EventError
    event_id: str | None = None
    customer_id: str | None = None


Candidate = UsageEventIn | Invalid


def invalid(error: EventError, event_id: object = None, customer_id: object = None) -> Invalid:
    """An Invalid keeping the ids that were readable as strings."""
    return Invalid(error, _str_or_none(event_id), _str_or_none(customer_id))


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def same_name(field: str | None) -> str | None:
    return field


class Intake:
    def __init__(self, settings: Settings, producer: AckedProducer):
        self.settings = settings
        self.producer = producer
        self.topic = topics(settings).usage_events
        self.limits = EventLimits.from_settings(settings)
        self.codec: AvroCodec | None = None
        self.schema_status = "pending: not registered yet"

    async def register_schema(self, registry) -> None:
        """Register usage_event.avsc under its subject (idempotent), retrying until it works;
        ingestion answers 503 and /ready is not ready until then."""
        text = schema_text(self.topic.schema_file)
        delay = 0.25
        while True:
            try:
                schema_id = await asyncio.to_thread(registry.register, self.topic.subject, text)
            except Exception as exc:  # noqa: BLE001 - Postgres not there yet, or the registry refused it
                self.schema_status = f"error: {exc}"[:300]
                log.warning("schema registration failed; retrying", subject=self.topic.subject, error=str(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            self.codec = codec_with_id(self.topic.schema_file, schema_id)
            self.schema_status = "ok"
            log.info("usage event schema registered", subject=self.topic.subject, schema_id=schema_id)
            return

    async def accept(
        self,
        candidates: Sequence[Candidate],
        customer_id: str,
        source: str,
        field_name: Callable[[str | None], str | None] = same_name,
    ) -> Response:
        """Judge, produce and answer; `field_name` spells a contract field as the route's client
        sent it (CloudEvents: `user_id` is `subject`)."""
        codec = self.codec
        if codec is None:
            UNAVAILABLE.labels("schema").inc()
            raise self._unavailable("schema_unavailable", f"the event schema is not registered yet ({self.schema_status})")
        received_at = datetime.now(timezone.utc)
        records: list[tuple[bytes, bytes]] = []
        rejected: list[dict] = []
        seen: set[str] = set()
        for index, candidate in enumerate(candidates):
            if isinstance(candidate, Invalid):
                if candidate.customer_id is not None and candidate.customer_id != customer_id:
                    raise _foreign(index, field_name)
                rejected.append(self._rejection(index, candidate.event_id, candidate.error, source, field_name))
                continue
            try:
                record = to_record(
                    candidate, customer_id=customer_id, source=source, received_at=received_at, limits=self.limits
                )
            except ForeignCustomerError:
                raise _foreign(index, field_name) from None
            except EventError as exc:
                rejected.append(self._rejection(index, candidate.event_id, exc, source, field_name))
                continue
            if candidate.event_id in seen:
                error = EventError("event_id", DUPLICATE)
                rejected.append(self._rejection(index, candidate.event_id, error, source, field_name))
                continue
            seen.add(candidate.event_id)
            records.append((f"{customer_id}:{candidate.user_id}".encode(), codec.encode(record)))

        delivery = await self.producer.produce(self.topic.name, records, len(records))
        if delivery.acknowledged:
            ACCEPTED.labels(source).inc(delivery.acknowledged)
        if delivery.error is not None:
            UNAVAILABLE.labels("kafka").inc()
            log.warning("kafka delivery failed", error=delivery.error, acknowledged=delivery.acknowledged, of=len(records))
            raise self._unavailable(
                "kafka_unavailable",
                f"Kafka did not acknowledge every event ({delivery.error}); {delivery.acknowledged} of "
                f"{len(records)} valid events were durably accepted before the failure. Retry the request: "
                "events carry their event_id, so the ones already accepted are not charged twice.",
                extra={"accepted": delivery.acknowledged, "rejected": rejected},
            )
        status = 202 if not rejected else 207 if records else 400
        return json_response({"accepted": len(records), "rejected": rejected}, status)

    def _rejection(self, index: int, event_id: str | None, error: EventError, source: str, field_name) -> dict:
        field = error.field
        top = field.split(".", 1)[0] if field else "other"
        REJECTED.labels(source, top if top in _CONTRACT_FIELDS else "other").inc()
        return {"index": index, "event_id": event_id, "field": field_name(field), "reason": error.reason}

    def _unavailable(self, code: str, message: str, extra: dict | None = None) -> ApiError:
        return ApiError(
            503, code, message, headers={"Retry-After": str(self.settings.ingest_retry_after_s)}, extra=extra
        )


def _foreign(index: int, field_name) -> ApiError:
    return ApiError(
        403,
        "foreign_customer",
        f"the event at index {index} names another tenant's customer_id than the API key's; "
        "nothing in this request was accepted",
        field=field_name("customer_id"),
    )


def check_count(count: int, max_events: int) -> None:
    if count == 0:
        raise ApiError(400, "empty_batch", "no events: send at least one", field="events")
    if count > max_events:
        raise ApiError(
            413,
            "too_many_events",
            f"{count} events; at most {max_events} per request (INGEST_MAX_BATCH_EVENTS): split the batch",
            field="events",
        )


@asynccontextmanager
async def lifespan(app):
    """Per API process: the Kafka producer, the schema registration."""
    settings: Settings = app.state.settings
    producer = AckedProducer(settings, client_id="openmonetize-api")
    producer.start()
    app.state.intake = intake = Intake(settings, producer)
    registration = asyncio.create_task(intake.register_schema(app.state.codec_registry))
    try:
        yield
    finally:
        registration.cancel()
        await asyncio.to_thread(producer.close)
