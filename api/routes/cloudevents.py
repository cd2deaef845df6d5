"""`POST /v1/events`: usage events as CloudEvents 1.0 over HTTP, in the three content modes.

- structured: `Content-Type: application/cloudevents+json`, one event as a JSON object;
- batch: `Content-Type: application/cloudevents-batch+json`, a JSON array of such objects;
- binary: the attributes in `ce-*` headers (percent-encoded, per the HTTP binding), the JSON
  data as the body (`Content-Type` absent or JSON).

Mapping to the event contract: `id` → event_id, `type` → event_type, `subject` → user_id,
`time` → timestamp, `source` → metadata `ce_source`, and `data` (a JSON object) holds the usage
fields (feature_id, provider, model, input_tokens, ..., metadata). `specversion` must be "1.0".
`type` is either our bare name (`TOKEN_USAGE`) or its reverse-DNS form, `dev.openmonetize.usage.`
followed by the name in any case (`dev.openmonetize.usage.token_usage`): the latter is what
CloudEvents recommends, the former what our other routes use. Extension attributes are ignored.
Errors name fields as the client sent them: `subject`, `time`, `data.model`.

Validation, status codes and partial-batch rules are those of `/v1/events/ingest` (`api.intake`).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import unquote

import msgspec
from fastapi import APIRouter, Depends, Request, Response

from api import intake, json_bodies
from api.auth import tenant
from api.errors import ApiError
from api.routes.ingest import RESPONSES
from schemas import storable
from schemas.usage_event import EventError, UsageEventIn, convert_event

router = APIRouter(tags=["usage events"])

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
TYPE_PREFIX = "dev.openmonetize.usage."
SPECVERSION = "1.0"
CE_SOURCE_KEY = "ce_source"

# contract field -> the CloudEvents attribute that carries it
ATTRIBUTE_OF = {"event_id": "id", "event_type": "type", "user_id": "subject", "timestamp": "time"}
_ATTRIBUTES = frozenset({"specversion", "source", "data", "data_base64", "datacontenttype", *ATTRIBUTE_OF.values()})

# Floats as Decimal: `quantity` stays exact (0.1 is 0.1, not 0.1000000000000000055...).
_object = msgspec.json.Decoder(dict[str, Any], float_hook=Decimal)
_array = msgspec.json.Decoder(list[msgspec.Raw])


def field_name(field: str | None) -> str | None:
    """A contract field as a CloudEvents client spells it: an attribute, or a key of `data`."""
    if field is None or field in _ATTRIBUTES or field.startswith("data."):
        return field
    top = field.split(".", 1)[0]
    if top in ATTRIBUTE_OF:
        return ATTRIBUTE_OF[top] + field[len(top):]
    return f"data.{field}"


def event_type(ce_type: str) -> str:
    """`dev.openmonetize.usage.token_usage` → `TOKEN_USAGE`; a bare name is kept as it is."""
    if ce_type.startswith(TYPE_PREFIX):
        return ce_type[len(TYPE_PREFIX):].upper()
    return ce_type


def to_event(attributes: Mapping[str, Any]) -> UsageEventIn:
    """One CloudEvent (its attributes, `data` included) as a usage event, or EventError."""
    specversion = attributes.get("specversion")
    if specversion != SPECVERSION:
        raise EventError("specversion", f"must be {SPECVERSION!r}, got {specversion!r}")
    for name in ("id", "source", "type"):
        if not isinstance(attributes.get(name), str) or not attributes[name]:
            raise EventError(name, "required (a non-empty string)")
    if "data_base64" in attributes:
        raise EventError("data_base64", "binary data is not supported: send the usage fields as JSON `data`")
    data = attributes.get("data")
    if not isinstance(data, dict):
        raise EventError("data", "required: a JSON object with the usage fields (feature_id, model, tokens, ...)")
    for key in ATTRIBUTE_OF:
        if key in data:
            raise EventError(f"data.{key}", f"set by the CloudEvents attribute `{ATTRIBUTE_OF[key]}`, not in data")
    fields = dict(data)
    fields["event_id"] = attributes["id"]
    fields["event_type"] = event_type(attributes["type"])
    if "subject" in attributes:
        fields["user_id"] = attributes["subject"]
    if "time" in attributes:
        fields["timestamp"] = attributes["time"]
    metadata = fields.get("metadata")
    if metadata is None or isinstance(metadata, dict):
        if metadata and CE_SOURCE_KEY in metadata:
            raise EventError(f"data.metadata.{CE_SOURCE_KEY}", "reserved: it holds the CloudEvents `source`")
        fields["metadata"] = {**(metadata or {}), CE_SOURCE_KEY: attributes["source"]}
    return convert_event(fields)


def candidate(attributes: Any) -> intake.Candidate:
    if not isinstance(attributes, dict):
        return intake.invalid(EventError(None, "a CloudEvent must be a JSON object"))
    try:
        return to_event(attributes)
    except EventError as exc:
        data = attributes.get("data")
        customer_id = data.get("customer_id") if isinstance(data, dict) else None
        return intake.invalid(exc, attributes.get("id"), customer_id)


def binary_attributes(headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    """The attributes of a binary-mode event: `ce-*` headers (percent-decoded) and the body as data."""
    attributes: dict[str, Any] = {
        name[3:].lower(): unquote(value) for name, value in headers.items() if name.lower().startswith("ce-")
    }
    if body.strip():
        attributes["data"] = _decode(body, _object)
    return attributes


@router.post(
    "/v1/events",
    summary="Ingest usage events as CloudEvents 1.0 (structured, binary or batch mode)",
    status_code=202,
    responses={
        **RESPONSES,
        415: {"description": "Neither a CloudEvents content type nor binary-mode `ce-specversion` header"},
    },
)
async def cloudevents(request: Request, customer_id: str = Depends(tenant)) -> Response:
    settings = request.app.state.settings
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    binary = media_type not in (STRUCTURED, BATCH) and "ce-specversion" in request.headers
    if binary and media_type and media_type != "application/json" and not media_type.endswith("+json"):
        raise ApiError(415, "unsupported_data_type", f"binary-mode data must be JSON, got {media_type}")
    if media_type not in (STRUCTURED, BATCH) and not binary:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Content-Type {media_type or '(none)'}: send {STRUCTURED}, {BATCH}, "
            "or binary mode (ce-* headers with a JSON body)",
        )
    body = await request.body()  # at most INGEST_MAX_BODY_BYTES: api/body_limits.py
    if media_type == BATCH:
        events = _decode(body, _array)
        intake.check_count(len(events), settings.ingest_max_batch_events)
        candidates = [candidate(_decode_event(raw)) for raw in events]
    elif binary:
        candidates = [candidate(binary_attributes(request.headers, body))]
    else:
        candidates = [candidate(_decode(body, _object))]
    return await request.app.state.intake.accept(candidates, customer_id, "cloudevents", field_name)


def _decode(body: bytes, decoder: msgspec.json.Decoder) -> Any:
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise ApiError(400, "invalid_body", f"the body is not what this content type carries: {exc}") from None
    except storable.JSON_ERRORS as exc:
        raise json_bodies.malformed_json(exc) from None


def _decode_event(raw: msgspec.Raw) -> Any:
    """One element of a batch; anything but an object becomes that element's rejection."""
    try:
        return _object.decode(raw)
    except storable.JSON_ERRORS:
        return None

