"""Opaque keyset cursors of the paged lists (ledger, users, teams): the sort key of the last
row of a page, as url-safe base64 of a JSON array. Clients pass them back unchanged; anything
else is a 422 naming `cursor`."""

from __future__ import annotations

import base64
import binascii

import orjson

from api.errors import ApiError


def encode(*key: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(key)).decode().rstrip("=")


def decode(cursor: str, parts: int) -> list[str]:
    """The key of a cursor made by `encode` with `parts` strings."""
    try:
        key = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):
        key = None
    if not (isinstance(key, list) and len(key) == parts and all(isinstance(part, str) and "\x00" not in part for part in key)):
        raise ApiError(422, "invalid_cursor", "cursor: not a cursor this API returned (pass next_cursor unchanged)", "cursor")
    return key
