"""What the SDK raises: the API's `{"error": {"code", "message", "field"}}` as a typed exception
per status, or a transport failure once the retries are spent."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
import msgspec


class OpenMonetizeError(Exception):
    """Every error of the SDK."""


class APIConnectionError(OpenMonetizeError):
    """The API could not be reached or did not answer in time, on every try."""


class APIError(OpenMonetizeError):
    """The API answered with an error. `code`, `message` and `field` are its error body's;
    `body` is the whole decoded body (e.g. `problems` of invalid burn-table rules)."""

    status: int = 0

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 body: Any = None, headers: Mapping[str, str] | None = None):
        super().__init__(f"{status} {code}: {message}" + (f" (field {field})" if field else ""))
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.body = body
        self.headers = dict(headers or {})


class BadRequestError(APIError):
    """400: the body is not JSON or not the expected envelope."""


class AuthenticationError(APIError):
    """401: no API key, or an unknown or revoked one."""


class PermissionDeniedError(APIError):
    """403: the request names another tenant than the API key's."""


class NotFoundError(APIError):
    """404: no such resource for this tenant."""


class ConflictError(APIError):
    """409: e.g. an idempotency key reused for a different request."""


class PayloadTooLargeError(APIError):
    """413: the body (or the batch) is over the API's limit."""


class UnprocessableEntityError(APIError):
    """422: a field is invalid; `field` names it."""


class RateLimitError(APIError):
    """429: this API key made too many requests; `retry_after` is the API's Retry-After in seconds."""

    @property
    def retry_after(self) -> float | None:
        return retry_after_s(self.headers)


class ServiceUnavailableError(APIError):
    """503: a dependency of the API (Kafka, Postgres, a view) is unavailable."""


class InternalServerError(APIError):
    """Another 5xx."""


class EventRejected(UnprocessableEntityError):
    """`events.track`: the API refused the event; `field` and `message` say why, `rejected`
    is the API's list (one entry)."""

    @property
    def rejected(self) -> list[dict]:
        return list(self.body.get("rejected", [])) if isinstance(self.body, dict) else []


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError, 401: AuthenticationError, 403: PermissionDeniedError, 404: NotFoundError,
    409: ConflictError, 413: PayloadTooLargeError, 422: UnprocessableEntityError, 429: RateLimitError,
    503: ServiceUnavailableError,
}


def error_from(response: httpx.Response) -> APIError:
    """The typed exception of an error answer."""
    try:
        body = msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code, message, field = str(error.get("code", "error")), str(error.get("message", "")), error.get("field")
    else:
        code, message, field = "http_error", response.text[:500] or response.reason_phrase, None
    if response.status_code >= 500 and response.status_code not in _BY_STATUS:
        cls = InternalServerError
    else:
        cls = _BY_STATUS.get(response.status_code, APIError)
    return cls(response.status_code, code, message, field, body, response.headers)


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """Retry-After in seconds (the API sends whole seconds), or None."""
    value = headers.get("retry-after") or headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
