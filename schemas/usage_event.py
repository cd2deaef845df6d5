"""The usage event as clients send it, its validation, and the record it becomes on usage.events.

Every ingestion path (HTTP JSON batches, CloudEvents, the producer client, the AI proxy) goes
through `UsageEventIn` → `to_record`, so an event means the same thing whichever way it came.
Decoding is msgspec (compiled, and it names the field of a type error); the rules that need the
settings or the clock (bounds, time window, required fields per event type) follow in Python.

The units (tokens, images, quantities) and their checks are schemas/usage_units.py's, shared
with every other path that accepts units. Rating bills `input_tokens - cached_input_tokens` at
the input rate and the cached part at the cached rate. Unknown fields are refused rather than
ignored: a typo such as `input_token` would otherwise bill nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cached_property
from typing import TYPE_CHECKING

import msgspec

from schemas import storable
from schemas.usage_units import QUANTITY_SCALE, UnitBounds, UnitsError, check_units

if TYPE_CHECKING:  # a caller passes the settings in: schemas/ sits below openmonetize/ (docs/development/layers.md)
    from openmonetize.settings import Settings

SCHEMA_FILE = "usage_event.avsc"
EVENT_TYPES = ("TOKEN_USAGE", "EMBEDDING", "IMAGE_GENERATION", "AUDIO", "CUSTOM")
# String fields with few distinct values: the encoder caches their encodings.
LOW_CARDINALITY_FIELDS = (
    "customer_id", "team_id", "event_type", "feature_id", "provider", "model",
    "image_size", "quality", "unit_type", "source",
)
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 1024

Id = storable.ident(128)
Label = storable.ident(256)


class UsageEventIn(msgspec.Struct, forbid_unknown_fields=True):
    """One event as a client sends it (JSON field names are the contract's)."""

    event_id: Id
    user_id: Id
    event_type: str
    feature_id: Id
    timestamp: datetime
    customer_id: Id | None = None
    team_id: Id | None = None
    provider: Label | None = None
    model: Label | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_input_tokens: int | None = None
    image_count: int | None = None
    image_size: Label | None = None
    quality: Label | None = None
    unit_type: Label | None = None
    quantity: Decimal | None = None
    reservation_id: Id | None = None
    metadata: dict[str, str] | None = None


class EventError(ValueError):
    """An event that can't be accepted: which field, and why."""

    def __init__(self, field: str | None, reason: str):
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field
        self.reason = reason


class ForeignCustomerError(EventError):
    """The event names a customer other than the API key's tenant."""


# Required fields per event type, beyond the ones every event has.
_REQUIRED: dict[str, tuple[str, ...]] = {
    "TOKEN_USAGE": ("provider", "model", "input_tokens", "output_tokens"),
    "EMBEDDING": ("provider", "model", "input_tokens"),
    "IMAGE_GENERATION": ("provider", "model", "image_count"),
    "AUDIO": ("provider", "model"),
    "CUSTOM": ("unit_type", "quantity"),
}


@dataclass(frozen=True)
class EventLimits:
    """The bounds an event must respect; from the settings (EVENT_MAX_*)."""

    max_age: timedelta
    max_future: timedelta
    max_tokens: int
    max_images: int
    max_quantity: Decimal
    max_metadata_entries: int

    @cached_property
    def units(self) -> UnitBounds:
        """The bounds of an event's units (an event reports at least one image, if any)."""
        return UnitBounds(self.max_tokens, self.max_images, self.max_quantity, min_images=1,
                          quantity_scale=QUANTITY_SCALE)

    @classmethod
    def from_settings(cls, s: Settings) -> EventLimits:
        return cls(
            timedelta(seconds=s.event_max_age_s),
            timedelta(seconds=s.event_max_future_s),
            s.event_max_tokens,
            s.event_max_images,
            s.event_max_quantity,
            s.event_max_metadata_entries,
        )


_decoder = msgspec.json.Decoder(UsageEventIn)
_AT = re.compile(r" - at `\$\.?([^`]*)`$")
_FIELD = re.compile(r"field `([^`]+)`")


def decode_event(raw: bytes) -> UsageEventIn:
    """Decode one event's JSON, or raise EventError naming the field."""
    try:
        return _decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise _event_error(str(exc)) from None
    except storable.JSON_ERRORS as exc:
        raise EventError(None, f"malformed JSON: {storable.json_problem(exc)}") from None


def convert_event(fields: dict) -> UsageEventIn:
    """Build an event from already-parsed values (CloudEvents data, the producer client)."""
    try:
        return msgspec.convert(fields, UsageEventIn)
    except msgspec.ValidationError as exc:
        raise _event_error(str(exc)) from None


def _event_error(message: str) -> EventError:
    """msgspec says `Expected `int | null`, got `str` - at `$.input_tokens``; we say
    field=input_tokens, reason=`expected int, got str`."""
    message = storable.readable(message)
    at = _AT.search(message)
    if at:
        reason = message[: at.start()]
        field = at.group(1) or None
    else:
        named = _FIELD.search(message)
        field, reason = (named.group(1), message) if named else (None, message)
    reason = reason.replace("`", "").replace(" | null", "")
    if reason.startswith("Object missing required field"):
        reason = "required"
    elif reason.startswith("Object contains unknown field"):
        reason = "unknown field (see the event contract for the accepted fields)"
    elif reason.startswith("Expected"):
        reason = "e" + reason[1:]
    return EventError(field, reason)


def to_record(
    event: UsageEventIn,
    *,
    customer_id: str,
    source: str,
    received_at: datetime,
    limits: EventLimits,
) -> dict:
    """Check the rules that need context and return the usage.events Avro record.

    `customer_id` is the tenant of the API key: an event naming another customer is refused.
    """
    if event.customer_id is not None and event.customer_id != customer_id:
        raise ForeignCustomerError("customer_id", "belongs to another tenant than the API key")
    if event.event_type not in _REQUIRED:
        raise EventError("event_type", f"unknown event type {event.event_type!r}; one of {', '.join(EVENT_TYPES)}")
    for name in _REQUIRED[event.event_type]:
        if getattr(event, name) is None:
            raise EventError(name, f"required for {event.event_type} events")
    if event.event_type == "AUDIO" and event.quantity is None and event.input_tokens is None and event.output_tokens is None:
        raise EventError("quantity", "AUDIO events need quantity and unit_type, or token counts")
    if (event.quantity is None) != (event.unit_type is None):
        missing = "unit_type" if event.unit_type is None else "quantity"
        raise EventError(missing, "quantity and unit_type go together")

    try:
        check_units(event, limits.units)
    except UnitsError as exc:
        raise EventError(exc.field, exc.reason) from None
    if event.metadata is not None:
        _check_metadata(event.metadata, limits.max_metadata_entries)

    timestamp = _check_timestamp(event.timestamp, received_at, limits)
    return {
        "event_id": event.event_id,
        "customer_id": customer_id,
        "user_id": event.user_id,
        "team_id": event.team_id,
        "event_type": event.event_type,
        "feature_id": event.feature_id,
        "provider": event.provider,
        "model": event.model,
        "input_tokens": event.input_tokens,
        "output_tokens": event.output_tokens,
        "cached_input_tokens": event.cached_input_tokens,
        "image_count": event.image_count,
        "image_size": event.image_size,
        "quality": event.quality,
        "unit_type": event.unit_type,
        "quantity": event.quantity,
        "reservation_id": event.reservation_id,
        "timestamp": timestamp,
        "metadata": event.metadata,
        "received_at": received_at,
        "source": source,
    }


def _check_metadata(metadata: dict[str, str], max_entries: int) -> None:
    if len(metadata) > max_entries:
        raise EventError("metadata", f"at most {max_entries} entries (EVENT_MAX_METADATA_ENTRIES), got {len(metadata)}")
    for key, value in metadata.items():
        if not key or len(key) > MAX_METADATA_KEY:
            raise EventError(f"metadata.{key[:MAX_METADATA_KEY]}", f"keys are 1 to {MAX_METADATA_KEY} characters")
        if len(value) > MAX_METADATA_VALUE:
            raise EventError(f"metadata.{key}", f"values are at most {MAX_METADATA_VALUE} characters")
        if "\x00" in key:
            raise EventError("metadata", f"a key {storable.TEXT_RULE}")
        if "\x00" in value:
            raise EventError(f"metadata.{key}", storable.TEXT_RULE)


def _check_timestamp(timestamp: datetime, now: datetime, limits: EventLimits) -> datetime:
    try:
        timestamp = storable.utc_instant(timestamp)
    except ValueError as exc:
        raise EventError("timestamp", str(exc)) from None
    if timestamp < now - limits.max_age:
        raise EventError("timestamp", f"older than {limits.max_age.days} days (EVENT_MAX_AGE_S)")
    if timestamp > now + limits.max_future:
        raise EventError("timestamp", f"more than {int(limits.max_future.total_seconds())}s in the future (EVENT_MAX_FUTURE_S)")
    return timestamp
