"""What the stores can hold, refused at the edge rather than found out in a sink.

A value that passes the API but that a store cannot take stalls whatever writes it: Postgres
refuses NUL in text and in jsonb (the ledger sink's COPY failed on an event id with `\\u0000`
and retried that batch for ever), psycopg cannot read back a timestamp past year 9999 (a price
override at `9999-12-31T23:59:59-01:00` is year 10000 in UTC), and Avro cannot decode it
either (a grant expiring then was parked as `decode_error`). So, for every way in:

- ids (event, user, team, wallet, plan ids, idempotency keys, labels such as a model name):
  no control characters at all (U+0000-U+001F, U+007F): they are keys, shown in logs and CSVs;
- free text (names, reasons, metadata values): no NUL;
- instants: with a timezone, and within years 1..9999 once in UTC;
- JSON bodies: valid UTF-8, nested at most as deep as the decoder can go (`JSON_ERRORS`).
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Annotated

import msgspec

ID_PATTERN = r"^[^\x00-\x1f\x7f]*\Z"  # \Z: `$` would let a trailing newline through
TEXT_PATTERN = r"^[^\x00]*\Z"
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
ID_RULE = "must not contain control characters (U+0000 to U+001F, U+007F)"
TEXT_RULE = "must not contain the NUL character (U+0000)"

# What a JSON decoder raises on a body that is not JSON it can read: msgspec's own error, and
# Python's for nesting deeper than the interpreter's recursion limit or for invalid UTF-8.
JSON_ERRORS = (msgspec.DecodeError, RecursionError, UnicodeDecodeError)


def ident(max_length: int = 128, min_length: int = 1) -> object:
    """The msgspec constraint of an id-like string."""
    return Annotated[str, msgspec.Meta(min_length=min_length, max_length=max_length, pattern=ID_PATTERN)]


def text(max_length: int | None, min_length: int = 1) -> object:
    """The msgspec constraint of a free-text string (no length bound: None)."""
    return Annotated[str, msgspec.Meta(min_length=min_length, max_length=max_length, pattern=TEXT_PATTERN)]


_RULES = ((f"Expected `str` matching regex {ID_PATTERN!r}", ID_RULE),
          (f"Expected `str` matching regex {TEXT_PATTERN!r}", TEXT_RULE))


def readable(message: str) -> str:
    """msgspec's "Expected `str` matching regex '...'" in words."""
    for said, rule in _RULES:
        message = message.replace(said, rule)
    return message


def json_problem(exc: BaseException) -> str:
    """Why a body is not JSON we can read, for the client."""
    if isinstance(exc, RecursionError):
        return "the body nests arrays or objects too deeply"
    if isinstance(exc, UnicodeDecodeError):
        return f"the body is not valid UTF-8 (byte {exc.start})"
    return str(exc)


def utc_instant(value: datetime) -> datetime:
    """`value` in UTC; ValueError (the reason) without a timezone or outside years 1..9999 in UTC."""
    if value.tzinfo is None:
        raise ValueError("must carry a timezone (RFC 3339, e.g. 2026-11-26T12:00:00Z)")
    try:
        return value.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError("must fall within years 1 to 9999 in UTC") from None


def unstorable(value: object, path: str = "") -> tuple[str, str] | None:
    """(field path, reason) of the first string with a NUL or instant out of range anywhere in a
    decoded body (msgspec Structs, dicts, lists), or None. For bodies that end up in Postgres,
    free-form parts (rules, metadata) included."""
    if isinstance(value, str):
        return (path, TEXT_RULE) if "\x00" in value else None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return None  # the route says whether it needs a timezone
        try:
            utc_instant(value)
        except ValueError as exc:
            return path, str(exc)
        return None
    if isinstance(value, msgspec.Struct):
        items = ((sent, getattr(value, name))  # as the client named it (`from`, not `start`)
                 for name, sent in zip(value.__struct_fields__, value.__struct_encode_fields__))
    elif isinstance(value, dict):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = ((f"[{i}]", item) for i, item in enumerate(value))
    else:
        return None
    for key, item in items:
        key = str(key)
        if "\x00" in key:
            return path or "body", f"a key {TEXT_RULE}"
        where = f"{path}{key}" if key.startswith("[") else (f"{path}.{key}" if path else key)
        if found := unstorable(item, where):
            return found
    return None
