"""The proxy's usage readers on the providers' wire formats, fed in chunks cut anywhere."""

from __future__ import annotations

import orjson
import pytest

from api.proxy import anthropic, gemini, openai, sse
from api.proxy.calls import Refusal


def sse_event(data: dict | str, name: str | None = None, end: bytes = b"\n\n") -> bytes:
    text = data if isinstance(data, str) else orjson.dumps(data).decode()
    return (f"event: {name}\n" if name else "").encode() + f"data: {text}".encode() + end


def feed(meter, stream: bytes, size: int) -> bytes:
    out = b"".join(meter.chunk(stream[i:i + size]) for i in range(0, len(stream), size))
    return out + meter.end()


CHUNK = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o", "choices": []}
USAGE = {"prompt_tokens": 100, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 40},
         "completion_tokens_details": {"reasoning_tokens": 3}}


def chat_stream(with_usage: bool) -> bytes:
    chunks = [{**CHUNK, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}]
    chunks += [{**CHUNK, "choices": [{"index": 0, "delta": {"content": word}}]} for word in ("a", "b", "c")]
    if with_usage:
        chunks = [{**chunk, "usage": None} for chunk in chunks] + [{**CHUNK, "usage": USAGE}]
    return b"".join(sse_event(chunk) for chunk in chunks) + sse_event("[DONE]")


@pytest.mark.parametrize("size", [1, 7, 64, 10_000])
def test_an_injected_usage_chunk_is_taken_out_of_what_the_client_sees(size):
    call = openai.plan("/v1/chat/completions", orjson.dumps({"model": "gpt-4o", "messages": [], "stream": True}))
    assert orjson.loads(call.body)["stream_options"] == {"include_usage": True}
    assert feed(call.meter, chat_stream(with_usage=True), size) == chat_stream(with_usage=False)
    usage = call.meter.usage()
    assert (usage.input_tokens, usage.output_tokens, usage.cached_input_tokens) == (100, 7, 40)
    assert usage.details == {"reasoning_tokens": "3"}


def test_a_client_that_asked_for_usage_gets_the_stream_byte_for_byte():
    raw = orjson.dumps({"model": "gpt-4o", "stream": True, "stream_options": {"include_usage": True}})
    call = openai.plan("/v1/chat/completions", raw)
    assert call.body is raw
    stream = chat_stream(with_usage=True)
    assert feed(call.meter, stream, 5) == stream and call.meter.usage().output_tokens == 7


def test_a_chat_stream_cut_before_its_usage_is_estimated_from_what_was_sent():
    raw = orjson.dumps({"model": "gpt-4o", "stream": True, "max_tokens": 9})
    call = openai.plan("/v1/chat/completions", raw)
    assert (call.estimate.input_tokens, call.estimate.max_output_tokens) == (len(raw) // 4, 9)  # the client's body
    stream = chat_stream(with_usage=True)
    call.meter.chunk(stream[:stream.index(b'"c"')])  # the role chunk and two words
    usage = call.meter.usage()
    assert (usage.input_tokens, usage.output_tokens, usage.details) == (len(raw) // 4, 2, {"usage": "estimated"})


def test_anthropic_counts_every_input_token_and_takes_the_last_output_figure():
    call = anthropic.plan("/v1/messages", orjson.dumps({"model": "claude", "max_tokens": 50, "stream": True}))
    stream = (sse_event({"type": "message_start", "message": {"usage": {"input_tokens": 10, "cache_creation_input_tokens": 5,
                                                                         "cache_read_input_tokens": 20, "output_tokens": 1}}},
                        "message_start")
              + sse_event({"type": "content_block_delta", "delta": {"text": "x"}}, "content_block_delta")
              + sse_event({"type": "message_delta", "usage": {"output_tokens": 12}}, "message_delta")
              + sse_event({"type": "message_stop"}, "message_stop"))
    assert feed(call.meter, stream, 3) == stream
    usage = call.meter.usage()
    assert (usage.input_tokens, usage.cached_input_tokens, usage.output_tokens) == (35, 20, 12)
    assert usage.details == {"cache_creation_input_tokens": "5"}


METADATA = {"promptTokenCount": 30, "candidatesTokenCount": 8, "thoughtsTokenCount": 4, "cachedContentTokenCount": 10}


def test_gemini_sse_and_json_array_streams_give_the_last_usage_metadata():
    chunks = [{"candidates": [{"content": {"parts": [{"text": "a"}]}}], "usageMetadata": {"promptTokenCount": 30}},
              {"candidates": [{"content": {"parts": [{"text": "b"}]}, "finishReason": "STOP"}], "usageMetadata": METADATA}]
    sse_call = gemini.plan("/v1beta/models/gemini-2.5-flash:streamGenerateContent", b"{}", sse_stream=True)
    feed(sse_call.meter, b"".join(sse_event(c, end=b"\r\n\r\n") for c in chunks), 4)
    array_call = gemini.plan("/v1/models/gemini-2.5-flash:streamGenerateContent", b"{}", sse_stream=False)
    feed(array_call.meter, orjson.dumps(chunks, option=orjson.OPT_INDENT_2), 9)
    for call in (sse_call, array_call):
        usage = call.meter.usage()
        assert (call.model, usage.input_tokens, usage.output_tokens, usage.cached_input_tokens) == ("gemini-2.5-flash", 30, 12, 10)
        assert usage.details == {"reasoning_tokens": "4"}


def test_a_cut_json_array_stream_is_estimated_from_its_last_complete_usage():
    call = gemini.plan("/v1beta/models/g:streamGenerateContent", b"{}", sse_stream=False)
    text = orjson.dumps([{"usageMetadata": {"promptTokenCount": 30, "candidatesTokenCount": 2}}, {"usageMetadata": METADATA}])
    call.meter.chunk(text[:-20])
    usage = call.meter.usage()
    assert (usage.input_tokens, usage.output_tokens, usage.details) == (30, 2, {"usage": "estimated"})


def test_images_are_counted_with_the_answers_size_and_quality_else_the_requests():
    call = openai.plan("/v1/images/generations", orjson.dumps({"model": "gpt-image-1", "n": 3, "size": "512x512"}))
    assert (call.estimate.event_type, call.estimate.image_count) == ("IMAGE_GENERATION", 3)
    call.meter.body(orjson.dumps({"data": [{"b64_json": "x"}] * 3, "quality": "high"}))
    usage = call.meter.usage()
    assert (usage.image_count, usage.image_size, usage.quality) == (3, "512x512", "high")


@pytest.mark.parametrize("body", [b"not json", b"[1]", b'{"messages": []}', b'{"model": ""}'])
def test_a_request_without_a_model_is_refused_in_the_providers_format(body):
    with pytest.raises(Refusal) as refused:
        openai.plan("/v1/chat/completions", body)
    assert refused.value.status == 400
    assert orjson.loads(openai.render(refused.value))["error"]["type"] == "invalid_request_error"
    assert orjson.loads(anthropic.render(refused.value))["error"]["type"] == "invalid_request_error"
    assert orjson.loads(gemini.render(refused.value))["error"]["status"] == "INVALID_ARGUMENT"


def test_sse_events_split_on_any_blank_line_kind():
    splitter = sse.EventSplitter()
    assert splitter.feed(b"data: a\n\ndata: b\r\n\r\ndata: c") == [b"data: a\n\n", b"data: b\r\n\r\n"]
    assert splitter.rest() == b"data: c"
    assert sse.data_of(b"event: x\ndata: 1\ndata:2\n\n") == b"1\n2"
