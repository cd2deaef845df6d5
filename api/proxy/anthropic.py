"""Anthropic: messages. Usage is `usage` of the message; in a stream, `message_start` carries
the input side and `message_delta` the output tokens so far (cumulative).

Anthropic's `input_tokens` leaves out the prompt-cache reads and writes; the usage event's
counts every input token, so input = input_tokens + cache_creation_input_tokens +
cache_read_input_tokens, of which cache_read_input_tokens are the cached part. Cache writes
are named in the event's metadata (`cache_creation_input_tokens`).
"""

from __future__ import annotations

import orjson

from api.proxy import sse
from api.proxy.calls import Call, Meter, Refusal, Usage, count, estimated, json_object, prompt_tokens, text_field, token_estimate

PROVIDER = "anthropic"
ENDPOINTS = {"/v1/messages": "messages"}
_ERRORS = {
    "authentication": "authentication_error",
    "permission": "permission_error",
    "invalid_request": "invalid_request_error",
    "insufficient_credits": "billing_error",
    "unavailable": "api_error",
    "timeout": "api_error",
    "rate_limit": "rate_limit_error",
}


def plan(path: str, raw: bytes) -> Call:
    body = json_object(raw)
    model = text_field(body, "model")
    estimate = token_estimate(raw, body.get("max_tokens"))
    return Call(PROVIDER, ENDPOINTS[path], model, body.get("stream") is True, raw, estimate, MessagesMeter(prompt_tokens(raw)))


def render(refusal: Refusal) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": _ERRORS[refusal.kind], "message": refusal.message}})


class MessagesMeter(Meter):
    def __init__(self, prompt_estimate: int):
        self.prompt_estimate = prompt_estimate
        self.splitter = sse.EventSplitter()
        self.counts: dict[str, int] = {}
        self.finished = False
        self.content_events = 0

    def chunk(self, data: bytes) -> bytes:
        for event in self.splitter.feed(data):
            if b"content_block_delta" in event:
                self.content_events += 1
            elif b"message_start" in event:
                self._add(orjson.loads(sse.data_of(event)).get("message", {}).get("usage"))
            elif b"message_delta" in event:
                self._add(orjson.loads(sse.data_of(event)).get("usage"))
            elif b"message_stop" in event:
                self.finished = True
        return data

    def body(self, data: bytes) -> None:
        self._add(orjson.loads(data).get("usage"))
        self.finished = True

    def _add(self, usage: object) -> None:
        """Later figures replace earlier ones (message_delta's are cumulative)."""
        if isinstance(usage, dict):
            for name, value in usage.items():
                if count(value) is not None:
                    self.counts[name] = value

    def usage(self) -> Usage | None:
        if not self.counts and not self.content_events:
            return None
        if not self.counts:
            return estimated(Usage("TOKEN_USAGE", self.prompt_estimate), self.content_events)
        created = self.counts.get("cache_creation_input_tokens", 0)
        read = self.counts.get("cache_read_input_tokens", 0)
        usage = Usage("TOKEN_USAGE", self.counts.get("input_tokens", 0) + created + read, self.counts.get("output_tokens", 0),
                      cached_input_tokens=read or None)
        if created:
            usage.details["cache_creation_input_tokens"] = str(created)
        return usage if self.finished else estimated(usage, self.content_events)
