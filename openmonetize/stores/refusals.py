"""What a store raises when it refuses a request for a reason the caller can fix: a bad value
(`Invalid`), a row that is not there (`NotFound`), one that already is (`Conflict`). Each has a
stable `code`, a `message` for a person and the `field` to blame, if one is.

They say nothing of HTTP: api/errors.py answers them as 422, 404 and 409 in the API's error
shape, and `openmonetize admin` prints them as one line."""

from __future__ import annotations


class Refusal(Exception):
    def __init__(self, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


class Invalid(Refusal):
    """A value the caller gave is not acceptable."""


class NotFound(Refusal):
    """What the request names does not exist (for this tenant)."""


class Conflict(Refusal):
    """The request clashes with what exists (a duplicate id, the last active key)."""
