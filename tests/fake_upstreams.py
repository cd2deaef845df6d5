"""Fake OpenAI, Anthropic and Gemini servers speaking each provider's wire format (shapes as
recorded from the real APIs, SSE streams included), for the proxy's tests and its benchmark.

`FakeUpstreams().start()` serves all three on one free port, in a thread of its own. Every
request is recorded (`requests`: path, query, headers, body). The model name picks a behaviour:

- any model: a normal answer with the fixed usage figures below;
- `fail-500`: the provider's 500 error;
- `stall-<k>`: a stream that sends k content events, then nothing until the client goes away
  (`disconnects` counts those);
- `hang`: no answer at all (not even headers) until the client goes away.

`latency_s` delays every answer (the benchmark's fixed upstream latency; `python -m
tests.fake_upstreams` serves them in a process of their own).
"""

from __future__ import annotations

import asyncio
import base64
import struct
import threading
from dataclasses import dataclass

import orjson
import uvloop
from aiohttp import web

OPENAI_USAGE = {"prompt_tokens": 1234, "completion_tokens": 56, "total_tokens": 1290,
                "prompt_tokens_details": {"cached_tokens": 200, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 16, "audio_tokens": 0,
                                              "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}
RESPONSES_USAGE = {"input_tokens": 321, "input_tokens_details": {"cached_tokens": 64}, "output_tokens": 45,
                   "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 366}
EMBEDDING_TOKENS = 9
ANTHROPIC_USAGE = {"input_tokens": 410, "cache_creation_input_tokens": 30, "cache_read_input_tokens": 100, "output_tokens": 27}
GEMINI_USAGE = {"promptTokenCount": 512, "candidatesTokenCount": 38, "thoughtsTokenCount": 12, "totalTokenCount": 562,
                "cachedContentTokenCount": 128, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 512}]}
WORDS = ["Hello", " from", " the", " fake", " upstream", "."]
TEXT = "".join(WORDS)
CREATED = 1764000000  # fixed, so that two answers to the same request are equal


@dataclass(frozen=True)
class Recorded:
    path: str
    query: str
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> dict:
        return orjson.loads(self.body)


class FakeUpstreams:
    def __init__(self, latency_s: float = 0.0, port: int = 0, record: bool = True):
        self.latency_s = latency_s
        self.record = record
        self.requests: list[Recorded] = []
        self.disconnects = 0
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeUpstreams:
        ready = threading.Event()

        def serve() -> None:
            self._loop = uvloop.new_event_loop()
            self._loop.run_until_complete(self._start())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, name="fake-upstreams", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fake upstreams did not start")
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def seen(self, marker: str) -> list[Recorded]:
        """The requests whose body contains `marker` (a test's own unique text)."""
        return [r for r in self.requests if marker.encode() in r.body]

    async def _start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/responses", self._responses)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_post("/v1/images/generations", self._images)
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_post("/v1/models/{target}", self._gemini)  # google-genai's default API version
        app.router.add_post("/v1beta/models/{target}", self._gemini)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    async def _received(self, request: web.Request) -> tuple[dict, str]:
        body = await request.read()
        if self.record:
            self.requests.append(Recorded(request.path, request.query_string,
                                          {k.lower(): v for k, v in request.headers.items()}, body))
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        payload = orjson.loads(body)
        model = payload.get("model") or request.match_info.get("target", "").split(":")[0]
        return payload, model

    async def _stream(self, request: web.Request, events: list[bytes], model: str) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                               "x-request-id": "req_fake_stream"})
        await response.prepare(request)
        stall = int(model.split("-", 1)[1]) if model.startswith("stall-") else None
        for event in events if stall is None else events[:stall + 1]:
            await response.write(event)
        if stall is not None:
            await self._until_gone(request)
            return response
        await response.write_eof()
        return response

    async def _until_gone(self, request: web.Request) -> None:
        while request.transport is not None and not request.transport.is_closing():
            await asyncio.sleep(0.01)
        self.disconnects += 1

    # --- OpenAI -------------------------------------------------------------------------
    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body, model = await self._received(request)
        if model == "hang":
            await self._until_gone(request)
            return web.Response(status=499)
        if model == "fail-500":
            return _json({"error": {"message": "The server had an error while processing your request.",
                                    "type": "server_error", "param": None, "code": None}}, 500)
        created = CREATED
        base = {"id": "chatcmpl-fake1", "object": "chat.completion.chunk", "created": created, "model": model,
                "service_tier": "default", "system_fingerprint": "fp_fake"}
        if not body.get("stream"):
            return _json({"id": "chatcmpl-fake1", "object": "chat.completion", "created": created, "model": model,
                          "choices": [{"index": 0, "message": {"role": "assistant", "content": TEXT, "refusal": None,
                                                               "annotations": []},
                                       "logprobs": None, "finish_reason": "stop"}],
                          "usage": OPENAI_USAGE, "service_tier": "default", "system_fingerprint": "fp_fake"},
                         headers={"x-request-id": "req_fake_chat"})
        usage = (body.get("stream_options") or {}).get("include_usage") is True
        chunks = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "", "refusal": None},
                                        "logprobs": None, "finish_reason": None}]}]
        chunks += [{**base, "choices": [{"index": 0, "delta": {"content": word}, "logprobs": None, "finish_reason": None}]}
                   for word in WORDS]
        chunks.append({**base, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]})
        if usage:
            chunks = [{**chunk, "usage": None} for chunk in chunks]
            chunks.append({**base, "choices": [], "usage": OPENAI_USAGE})
        events = [b"data: " + orjson.dumps(chunk) + b"\n\n" for chunk in chunks] + [b"data: [DONE]\n\n"]
        return await self._stream(request, events, model)

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        body, model = await self._received(request)
        response = {"id": "resp_fake1", "object": "response", "created_at": CREATED, "status": "completed",
                    "error": None, "incomplete_details": None, "instructions": None, "max_output_tokens": None,
                    "model": model, "parallel_tool_calls": True, "previous_response_id": None,
                    "output": [{"type": "message", "id": "msg_fake1", "status": "completed", "role": "assistant",
                                "content": [{"type": "output_text", "text": TEXT, "annotations": []}]}],
                    "temperature": 1.0, "tool_choice": "auto", "tools": [], "top_p": 1.0, "truncation": "disabled",
                    "usage": RESPONSES_USAGE, "metadata": {}}
        if not body.get("stream"):
            return _json(response)
        events = [_sse({"type": "response.created", "sequence_number": 0,
                        "response": {**response, "status": "in_progress", "output": [], "usage": None}},
                       "response.created")]
        events += [_sse({"type": "response.output_text.delta", "sequence_number": i + 1, "item_id": "msg_fake1",
                         "output_index": 0, "content_index": 0, "delta": word, "logprobs": []}, "response.output_text.delta")
                   for i, word in enumerate(WORDS)]
        events.append(_sse({"type": "response.completed", "sequence_number": len(WORDS) + 1, "response": response},
                           "response.completed"))
        return await self._stream(request, events, model)

    async def _embeddings(self, request: web.Request) -> web.Response:
        body, model = await self._received(request)
        vector = [0.25, -0.5, 0.125]
        embedding = (base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
                     if body.get("encoding_format") == "base64" else vector)
        return _json({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": embedding}],
                      "model": model, "usage": {"prompt_tokens": EMBEDDING_TOKENS, "total_tokens": EMBEDDING_TOKENS}})

    async def _images(self, request: web.Request) -> web.Response:
        body, _model = await self._received(request)
        pixel = base64.b64encode(b"\x89PNG fake").decode()
        return _json({"created": CREATED,
                      "data": [{"b64_json": pixel, "revised_prompt": "a fake picture"} for _ in range(body.get("n") or 1)]})

    # --- Anthropic ----------------------------------------------------------------------
    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body, model = await self._received(request)
        if model == "fail-500":
            return _json({"type": "error", "error": {"type": "api_error", "message": "Internal server error"}}, 500)
        message = {"id": "msg_fake1", "type": "message", "role": "assistant", "model": model,
                   "content": [{"type": "text", "text": TEXT}], "stop_reason": "end_turn", "stop_sequence": None,
                   "usage": ANTHROPIC_USAGE}
        if not body.get("stream"):
            return _json(message, headers={"request-id": "req_fake_msg"})
        start_usage = {**ANTHROPIC_USAGE, "output_tokens": 1}
        events = [_sse({"type": "message_start", "message": {**message, "content": [], "stop_reason": None,
                                                             "usage": start_usage}}, "message_start"),
                  _sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                       "content_block_start"),
                  _sse({"type": "ping"}, "ping")]
        events += [_sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": word}},
                        "content_block_delta") for word in WORDS]
        events += [_sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
                   _sse({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                         "usage": {"output_tokens": ANTHROPIC_USAGE["output_tokens"]}}, "message_delta"),
                   _sse({"type": "message_stop"}, "message_stop")]
        if model.startswith("stall-"):  # message_start, content_block_start and ping come before the content
            model = f"stall-{int(model.split('-', 1)[1]) + 2}"
        return await self._stream(request, events, model)

    # --- Gemini -------------------------------------------------------------------------
    async def _gemini(self, request: web.Request) -> web.StreamResponse:
        _body, model = await self._received(request)
        method = request.match_info["target"].split(":")[1]
        if model == "fail-500":
            return _json({"error": {"code": 500, "message": "Internal error encountered.", "status": "INTERNAL"}}, 500)

        def chunk(text: str, last: bool, usage: dict) -> dict:
            candidate = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
            if last:
                candidate["finishReason"] = "STOP"
            return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": model, "responseId": "fake-resp-1"}

        if method == "generateContent":
            return _json(chunk(TEXT, True, GEMINI_USAGE))
        partial = {"promptTokenCount": GEMINI_USAGE["promptTokenCount"], "totalTokenCount": GEMINI_USAGE["promptTokenCount"]}
        chunks = [chunk(word, False, partial) for word in WORDS[:-1]] + [chunk(WORDS[-1], True, GEMINI_USAGE)]
        events = [b"data: " + orjson.dumps(c) + b"\r\n\r\n" for c in chunks]
        if model.startswith("stall-"):
            model = f"stall-{int(model.split('-', 1)[1]) - 1}"  # each Gemini event is content
        return await self._stream(request, events, model)


def _json(body: dict, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json", headers=headers)


def _sse(data: dict, event: str) -> bytes:
    return f"event: {event}\n".encode() + b"data: " + orjson.dumps(data) + b"\n\n"


def main(argv: list[str] | None = None) -> None:
    """`python -m tests.fake_upstreams --port P --latency-ms L`: serve until killed (the benchmark's upstream)."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    fake = FakeUpstreams(latency_s=args.latency_ms / 1000, port=args.port, record=False).start()
    print(f"fake upstreams on {fake.url}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
