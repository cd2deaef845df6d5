"""`POST /v1/events/ingest`: a JSON batch `{"events": [...]}` of usage events.

The envelope is decoded as `{"events": list[Raw]}` so that each event is then validated on its
own: one bad event is rejected with its index, field and reason, not the whole batch (status
rules in `api.intake`). Other top-level keys of the envelope are ignored. This router owns the
ingestion resources (its lifespan: Kafka producer, API-key cache, schema id), which the
CloudEvents route shares.
"""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import APIRouter, Depends, Request, Response

from api import intake, json_bodies
from api.auth import tenant
from api.errors import ApiError
from schemas import storable
from schemas.usage_event import EventError, UsageEventIn, decode_event

router = APIRouter(tags=["usage events"], lifespan=intake.lifespan)


class _Envelope(msgspec.Struct):
    events: list[msgspec.Raw]


class _Readable(msgspec.Struct):
    """What can still be read of an event that failed validation."""

    event_id: Any = None
    customer_id: Any = None


_envelope = msgspec.json.Decoder(_Envelope)
_readable = msgspec.json.Decoder(_Readable)

_EVENT_SCHEMA = msgspec.json.schema_components([UsageEventIn], ref_template="#/components/schemas/{name}")[1][
    "UsageEventIn"
]
_RESULT = {
    "type": "object",
    "properties": {
        "accepted": {"type": "integer", "description": "events acknowledged by Kafka"},
        "rejected": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "index": {"type": "integer"},
                    "event_id": {"type": ["string", "null"]},
                    "field": {"type": ["string", "null"]},
                    "reason": {"type": "string"},
                },
            },
        },
    },
}
_ERROR = {"description": "The request as a whole was refused: `{\"error\": {\"code\", \"message\", \"field\"?}}`"}
RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"description": "Every event was accepted", "content": {"application/json": {"schema": _RESULT}}},
    207: {"description": "Some events were accepted, the others are listed in `rejected`",
          "content": {"application/json": {"schema": _RESULT}}},
    400: {"description": "No event was accepted (`rejected` lists why), or the body is not a valid envelope"},
    401: {"description": "Missing, unknown or revoked API key"},
    403: {"description": "An event names another tenant's customer_id; nothing was accepted"},
    413: {"description": "Too many events (INGEST_MAX_BATCH_EVENTS) or too many bytes (INGEST_MAX_BODY_BYTES)"},
    503: {"description": "Kafka or the schema registry is unavailable; `Retry-After` says when to retry, "
          "`accepted` how many events were durably accepted before the failure"},
}


@router.post(
    "/v1/events/ingest",
    summary="Ingest a batch of usage events",
    description=("Idempotent by `event_id`: an event sent again (a retry of the whole batch, a duplicate in it) is "
                 "accepted and charged once (the usage agent dedupes over the event window), so no `Idempotency-Key` "
                 "is needed; one sent with the header is treated the same way, the header is ignored."),
    status_code=202,
    responses={**RESPONSES, 400: {**RESPONSES[400], **_ERROR}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["events"],
                        "properties": {"events": {"type": "array", "minItems": 1, "items": _EVENT_SCHEMA}},
                    }
                }
            },
        }
    },
)
async def ingest(request: Request, customer_id: str = Depends(tenant)) -> Response:
    settings = request.app.state.settings
    body = await request.body()  # at most INGEST_MAX_BODY_BYTES: api/body_limits.py
    events = parse_envelope(body)
    intake.check_count(len(events), settings.ingest_max_batch_events)
    return await request.app.state.intake.accept([candidate(raw) for raw in events], customer_id, "http")


def parse_envelope(body: bytes) -> list[msgspec.Raw]:
    try:
        return _envelope.decode(body).events
    except msgspec.ValidationError as exc:
        field = "events" if "events" in str(exc) else None
        raise ApiError(400, "invalid_body", f'the body must be {{"events": [...]}}: {exc}', field=field) from None
    except storable.JSON_ERRORS as exc:
        raise json_bodies.malformed_json(exc) from None


def candidate(raw: msgspec.Raw) -> intake.Candidate:
    try:
        return decode_event(raw)
    except EventError as exc:
        try:
            readable = _readable.decode(raw)
        except storable.JSON_ERRORS:  # not an object at all (ValidationError is a DecodeError)
            return intake.invalid(exc)
        return intake.invalid(exc, readable.event_id, readable.customer_id)

