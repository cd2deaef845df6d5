"""OpenAI: chat completions, responses, embeddings and image generations.

A chat stream reports usage only when the request asks (`stream_options.include_usage`). When
the client did not, the proxy asks for it and gives the client the stream it would have had:
the extra last chunk (no choices, the usage) is dropped and the `"usage":null` the upstream
then adds to every other chunk is taken out again.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from api.entitlement_requests import EstimateIn
from api.proxy import sse
from api.proxy.calls import Call, Meter, Refusal, Usage, count, estimated, json_object, prompt_tokens, text_field, token_estimate

PROVIDER = "openai"
ENDPOINTS = {
    "/v1/chat/completions": "chat",
    "/v1/responses": "responses",
    "/v1/embeddings": "embeddings",
    "/v1/images/generations": "images",
}
_USAGE = re.compile(rb'"usage"\s*:\s*\{')
_NULL_USAGE = re.compile(rb',\s*"usage"\s*:\s*null')
_ERRORS = {  # kind -> (type, code)
    "authentication": ("invalid_request_error", "invalid_api_key"),
    "permission": ("invalid_request_error", "permission_denied"),
    "invalid_request": ("invalid_request_error", None),
    "insufficient_credits": ("insufficient_quota", "insufficient_credits"),
    "unavailable": ("api_error", "service_unavailable"),
    "timeout": ("api_error", "timeout"),
    "rate_limit": ("requests", "rate_limit_exceeded"),
}


def plan(path: str, raw: bytes) -> Call:
    endpoint = ENDPOINTS[path]
    body = json_object(raw)
    model = text_field(body, "model")
    if endpoint == "images":
        n = count(body.get("n")) or 1
        size, quality = _label(body.get("size")), _label(body.get("quality"))
        estimate = EstimateIn(event_type="IMAGE_GENERATION", image_count=n, image_size=size, quality=quality)
        return Call(PROVIDER, endpoint, model, False, raw, estimate, ImagesMeter(size, quality))
    if endpoint == "embeddings":
        estimate = EstimateIn(event_type="EMBEDDING", input_tokens=prompt_tokens(raw))
        return Call(PROVIDER, endpoint, model, False, raw, estimate, EmbeddingsMeter())
    stream = body.get("stream") is True
    if endpoint == "responses":
        estimate = token_estimate(raw, body.get("max_output_tokens"))
        return Call(PROVIDER, endpoint, model, stream, raw, estimate, ResponsesMeter(prompt_tokens(raw)))
    estimate = token_estimate(raw, body.get("max_completion_tokens", body.get("max_tokens")))
    options = body.get("stream_options")
    asked = isinstance(options, dict) and options.get("include_usage") is True
    inject = stream and not asked
    meter = ChatMeter(estimate.input_tokens, hide_usage=inject)
    if inject:
        body["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
        raw = orjson.dumps(body)
    return Call(PROVIDER, endpoint, model, stream, raw, estimate, meter)


def render(refusal: Refusal) -> bytes:
    kind, code = _ERRORS[refusal.kind]
    return orjson.dumps({"error": {"message": refusal.message, "type": kind, "param": None, "code": code}})


def _label(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def chat_usage(usage: dict) -> Usage:
    """`usage` of a chat completion (prompt/completion tokens; reasoning tokens are part of the
    completion tokens and are billed as output)."""
    result = Usage("TOKEN_USAGE", count(usage.get("prompt_tokens")), count(usage.get("completion_tokens")))
    result.cached_input_tokens = count((usage.get("prompt_tokens_details") or {}).get("cached_tokens"))
    _reasoning(result, (usage.get("completion_tokens_details") or {}).get("reasoning_tokens"))
    return result


def responses_usage(usage: dict) -> Usage:
    result = Usage("TOKEN_USAGE", count(usage.get("input_tokens")), count(usage.get("output_tokens")))
    result.cached_input_tokens = count((usage.get("input_tokens_details") or {}).get("cached_tokens"))
    _reasoning(result, (usage.get("output_tokens_details") or {}).get("reasoning_tokens"))
    return result


def _reasoning(usage: Usage, reasoning: Any) -> None:
    if count(reasoning):
        usage.details["reasoning_tokens"] = str(reasoning)


class ChatMeter(Meter):
    def __init__(self, prompt_estimate: int, hide_usage: bool):
        self.prompt_estimate = prompt_estimate
        self.hide_usage = hide_usage
        self.splitter = sse.EventSplitter()
        self.reported: Usage | None = None
        self.content_events = 0

    def chunk(self, data: bytes) -> bytes:
        kept = []
        for event in self.splitter.feed(data):
            if _USAGE.search(event):
                chunk = orjson.loads(sse.data_of(event))
                self.reported = chat_usage(chunk["usage"])
                if self.hide_usage and not chunk.get("choices"):
                    continue
            elif b'"delta"' in event and b'"role"' not in event:
                self.content_events += 1
            if self.hide_usage:
                event = _NULL_USAGE.sub(b"", event)
            kept.append(event)
        return b"".join(kept) if self.hide_usage else data

    def end(self) -> bytes:
        return self.splitter.rest() if self.hide_usage else b""

    def body(self, data: bytes) -> None:
        usage = orjson.loads(data).get("usage")
        self.reported = chat_usage(usage) if isinstance(usage, dict) else None

    def usage(self) -> Usage | None:
        if self.reported is not None:
            return self.reported
        if self.content_events == 0:
            return None
        return estimated(Usage("TOKEN_USAGE", self.prompt_estimate), self.content_events)


class ResponsesMeter(Meter):
    """The Responses API: the stream's `response.completed` (or `.incomplete`, `.failed`) event
    carries the response with its usage."""

    def __init__(self, prompt_estimate: int):
        self.prompt_estimate = prompt_estimate
        self.splitter = sse.EventSplitter()
        self.reported: Usage | None = None
        self.content_events = 0

    def chunk(self, data: bytes) -> bytes:
        for event in self.splitter.feed(data):
            if _USAGE.search(event):
                usage = (orjson.loads(sse.data_of(event)).get("response") or {}).get("usage")
                if isinstance(usage, dict):
                    self.reported = responses_usage(usage)
            elif b".delta" in event:
                self.content_events += 1
        return data

    def body(self, data: bytes) -> None:
        usage = orjson.loads(data).get("usage")
        self.reported = responses_usage(usage) if isinstance(usage, dict) else None

    def usage(self) -> Usage | None:
        if self.reported is not None:
            return self.reported
        if self.content_events == 0:
            return None
        return estimated(Usage("TOKEN_USAGE", self.prompt_estimate), self.content_events)


class EmbeddingsMeter(Meter):
    def __init__(self) -> None:
        self.reported: Usage | None = None

    def body(self, data: bytes) -> None:
        usage = orjson.loads(data).get("usage") or {}
        self.reported = Usage("EMBEDDING", count(usage.get("prompt_tokens")))

    def usage(self) -> Usage | None:
        return self.reported


class ImagesMeter(Meter):
    """Images by count, size and quality: the response's own size and quality when it states
    them (gpt-image-1 does), else the request's."""

    def __init__(self, size: str | None, quality: str | None):
        self.size, self.quality = size, quality
        self.reported: Usage | None = None

    def body(self, data: bytes) -> None:
        answer = orjson.loads(data)
        images = len(answer.get("data") or ())
        if images:
            size = _label(answer.get("size")) or self.size
            quality = _label(answer.get("quality")) or self.quality
            self.reported = Usage("IMAGE_GENERATION", image_count=images, image_size=size, quality=quality)

    def usage(self) -> Usage | None:
        return self.reported
