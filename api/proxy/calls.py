"""What every provider module gives the proxy: a `Call` planned from the client's request (the
model, whether it streams, the body to forward, the estimate for the entitlement check) and a
`Meter` that reads the usage out of the provider's response as it passes through."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from api.entitlement_requests import EstimateIn

TOKENS_PER_BYTE = 4  # the estimate of a prompt's tokens: its request body's bytes / 4


class Refusal(Exception):
    """The proxy answers the call itself, in the provider's error format; `kind` is one of
    authentication, permission, invalid_request, insufficient_credits, unavailable, timeout, rate_limit."""

    def __init__(self, status: int, kind: str, message: str):
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message


@dataclass
class Usage:
    """What the provider reported for one call, in the usage event's units (schemas/usage_units.py:
    `input_tokens` counts every input token, cached ones included)."""

    event_type: str
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_input_tokens: int | None = None
    image_count: int | None = None
    image_size: str | None = None
    quality: str | None = None
    details: dict[str, str] = field(default_factory=dict)  # the event's metadata: reasoning tokens, ...


class Meter:
    """Reads the usage of one response. A stream goes through `chunk` (which returns what the
    client gets: the same bytes, unless the provider module removes something it injected); a
    whole body through `body`. `usage` is the provider's final figure, or for a stream cut short
    what it reported so far (at least one output token per content event seen, marked
    `usage: estimated`), or None when nothing was used."""

    def chunk(self, data: bytes) -> bytes:
        raise NotImplementedError

    def end(self) -> bytes:
        """What `chunk` still holds when the stream ends (an unterminated last event)."""
        return b""

    def body(self, data: bytes) -> None:
        raise NotImplementedError

    def usage(self) -> Usage | None:
        raise NotImplementedError


@dataclass
class Call:
    provider: str  # the usage event's provider: openai, anthropic, google
    endpoint: str  # chat, responses, embeddings, images, messages, generate
    model: str
    stream: bool
    body: bytes  # forwarded upstream: the client's bytes, unless the provider module had to add something
    estimate: EstimateIn
    meter: Meter


def json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Refusal(400, "invalid_request", f"OpenMonetize proxy: the request body is not valid JSON ({exc})") from None
    if not isinstance(body, dict):
        raise Refusal(400, "invalid_request", "OpenMonetize proxy: the request body must be a JSON object")
    return body


def text_field(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise Refusal(400, "invalid_request", f"OpenMonetize proxy: `{name}` must be a non-empty string")
    return value


def count(value: Any) -> int | None:
    """A token or image count from a JSON document: a non-negative integer, else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def prompt_tokens(raw: bytes) -> int:
    return len(raw) // TOKENS_PER_BYTE


def token_estimate(raw: bytes, max_output: Any) -> EstimateIn:
    """An LLM call's estimate: its prompt from the body's size, its output from the call's own cap (0 without one)."""
    return EstimateIn(event_type="TOKEN_USAGE", input_tokens=prompt_tokens(raw), max_output_tokens=count(max_output) or 0)


def estimated(usage: Usage, content_events: int) -> Usage:
    """A stream cut short: at least one output token per content event the client was sent."""
    usage.output_tokens = max(usage.output_tokens or 0, content_events)
    usage.details["usage"] = "estimated"
    return usage
