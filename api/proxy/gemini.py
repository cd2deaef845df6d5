"""Gemini (the Generative Language API): `models/{model}:generateContent` and
`:streamGenerateContent`, as SSE (`?alt=sse`, what Google's SDKs ask for) or as one streamed JSON
array. Every chunk carries `usageMetadata` so far; the last one is the call's.

Thinking tokens (`thoughtsTokenCount`) are billed as output but not part of
`candidatesTokenCount`: output = candidates + thoughts. Tool-use prompt tokens are input.
"""

from __future__ import annotations

import json
import re

import orjson

from api.proxy import sse
from api.proxy.calls import Call, Meter, Refusal, Usage, count, estimated, json_object, prompt_tokens, token_estimate

PROVIDER = "google"
PATH = re.compile(r"/v1(?:beta|alpha)?/models/(?P<model>[^/:]+):(?P<action>generateContent|streamGenerateContent)")
_USAGE_KEY = b'"usageMetadata"'
_STATUS = {
    "authentication": "UNAUTHENTICATED",
    "permission": "PERMISSION_DENIED",
    "invalid_request": "INVALID_ARGUMENT",
    "insufficient_credits": "RESOURCE_EXHAUSTED",
    "unavailable": "UNAVAILABLE",
    "timeout": "DEADLINE_EXCEEDED",
    "rate_limit": "RESOURCE_EXHAUSTED",
}


def plan(path: str, raw: bytes, sse_stream: bool) -> Call:
    found = PATH.fullmatch(path)
    if found is None:
        raise Refusal(404, "invalid_request", f"OpenMonetize proxy: no Gemini method at {path}")
    body = json_object(raw)
    config = body.get("generationConfig")
    estimate = token_estimate(raw, config.get("maxOutputTokens") if isinstance(config, dict) else None)
    stream = found["action"] == "streamGenerateContent"
    meter = GeminiMeter(prompt_tokens(raw), sse_stream=stream and sse_stream)
    return Call(PROVIDER, "generate", found["model"], stream, raw, estimate, meter)


def render(refusal: Refusal) -> bytes:
    return orjson.dumps({"error": {"code": refusal.status, "message": refusal.message, "status": _STATUS[refusal.kind]}})


def gemini_usage(metadata: dict) -> Usage:
    prompt = (count(metadata.get("promptTokenCount")) or 0) + (count(metadata.get("toolUsePromptTokenCount")) or 0)
    thoughts = count(metadata.get("thoughtsTokenCount")) or 0
    usage = Usage("TOKEN_USAGE", prompt, (count(metadata.get("candidatesTokenCount")) or 0) + thoughts,
                  cached_input_tokens=count(metadata.get("cachedContentTokenCount")))
    if thoughts:
        usage.details["reasoning_tokens"] = str(thoughts)
    return usage


class GeminiMeter(Meter):
    def __init__(self, prompt_estimate: int, sse_stream: bool):
        self.prompt_estimate = prompt_estimate
        self.splitter = sse.EventSplitter() if sse_stream else None
        self.copy = bytearray()  # a JSON-array stream: its text so far, read at the end
        self.metadata: dict | None = None
        self.finished = False
        self.content_events = 0

    def chunk(self, data: bytes) -> bytes:
        if self.splitter is None:
            self.copy += data
            return data
        for event in self.splitter.feed(data):
            self.content_events += 1
            if _USAGE_KEY in event:
                answer = orjson.loads(sse.data_of(event))
                self.metadata = answer.get("usageMetadata") or self.metadata
                if any(c.get("finishReason") for c in answer.get("candidates") or () if isinstance(c, dict)):
                    self.finished = True
        return data

    def body(self, data: bytes) -> None:
        self.metadata = orjson.loads(data).get("usageMetadata")
        self.finished = True

    def usage(self) -> Usage | None:
        if self.splitter is None and self.copy:
            self.metadata, self.finished = _last_metadata(bytes(self.copy))
        if self.metadata is None:
            return None if not self.content_events else estimated(Usage("TOKEN_USAGE", self.prompt_estimate), self.content_events)
        usage = gemini_usage(self.metadata)
        return usage if self.finished else estimated(usage, 0)


def _last_metadata(text: bytes) -> tuple[dict | None, bool]:
    """The last complete `usageMetadata` object of a (possibly cut) JSON-array stream, and whether
    the array was closed."""
    decoded = text.decode("utf-8", "replace")
    decoder = json.JSONDecoder()
    found = None
    for match in re.finditer(r'"usageMetadata"\s*:\s*', decoded):
        try:
            found, _ = decoder.raw_decode(decoded, match.end())
        except ValueError:
            break
    return found, decoded.rstrip().endswith("]")
