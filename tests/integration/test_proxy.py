"""The AI proxy with the providers' OFFICIAL SDKs as clients (openai, anthropic, google-genai),
against fake upstreams that speak their wire formats (tests/fake_upstreams.py): answers come
back as the upstream gave them, and each call's usage is billed, exactly, to the user its
X-OM-* headers name, in ClickHouse and in the Postgres ledger."""

from __future__ import annotations

from decimal import Decimal

import anthropic
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from tests.conftest import eventually, unique
from tests.fake_upstreams import (
    ANTHROPIC_USAGE, EMBEDDING_TOKENS, GEMINI_USAGE, OPENAI_USAGE, RESPONSES_USAGE, TEXT, WORDS, FakeUpstreams,
)
from tests.integration.proxy_support import ProxyProcess, billed, free_port, new_user, nothing_billed, wait_until_allowed

PROVIDER_KEYS = {"openai": "sk-test-provider-key", "anthropic": "sk-ant-test-provider-key", "google": "g-test-provider-key"}


@pytest.fixture(scope="module")
def upstreams():
    fake = FakeUpstreams().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def proxy(settings, upstreams, tmp_path_factory):
    process = ProxyProcess(upstreams.url, tmp_path_factory.mktemp("proxy") / "proxy.log")
    yield process
    process.stop()


@pytest.fixture
def user(settings, tenant, proxy):
    funded = new_user(settings, tenant)
    wait_until_allowed(proxy, funded)
    return funded


def openai_client(base: str, headers: dict | None = None) -> openai.OpenAI:
    return openai.OpenAI(api_key=PROVIDER_KEYS["openai"], base_url=f"{base}/v1", default_headers=headers, max_retries=0)


def anthropic_client(base: str, headers: dict | None = None) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=PROVIDER_KEYS["anthropic"], base_url=base, default_headers=headers, max_retries=0)


def gemini_client(base: str, headers: dict | None = None) -> genai.Client:
    return genai.Client(api_key=PROVIDER_KEYS["google"], http_options=genai_types.HttpOptions(base_url=base, headers=headers))


def ask(marker: str) -> list[dict]:
    return [{"role": "user", "content": f"Say hello ({marker})"}]


def assert_credits_match_ledger(rows) -> None:
    for row in rows:
        assert row.credits > 0 and row.ledger_amount == -row.credits, row
        assert row.source == "proxy", row


def test_openai_chat_plain_and_streaming_come_back_unchanged_and_are_billed_exactly(settings, upstreams, proxy, user):
    marker = unique("m")
    direct, proxied = openai_client(upstreams.url), openai_client(proxy.url, user.headers)

    plain = proxied.chat.completions.with_raw_response.create(model="gpt-4o", messages=ask(marker), max_tokens=100)
    assert float(plain.headers["x-openmonetize-overhead-ms"]) > 0
    assert plain.parse().model_dump() == direct.chat.completions.create(model="gpt-4o", messages=ask(marker)).model_dump()

    chunks = [c.model_dump() for c in proxied.chat.completions.create(model="gpt-4o", messages=ask(marker), stream=True)]
    expected = [c.model_dump() for c in direct.chat.completions.create(model="gpt-4o", messages=ask(marker), stream=True)]
    assert chunks == expected and "".join(c["choices"][0]["delta"]["content"] or "" for c in chunks) == TEXT
    assert all(c["usage"] is None for c in chunks)  # the usage chunk the proxy asked for is not shown

    [forwarded_plain, _, forwarded_stream, _] = upstreams.seen(marker)  # proxied, direct, proxied, direct
    assert forwarded_stream.json()["stream_options"] == {"include_usage": True}
    for request in (forwarded_plain, forwarded_stream):
        assert request.headers["authorization"] == f"Bearer {PROVIDER_KEYS['openai']}"
        assert not [name for name in request.headers if name.startswith("x-om-")]

    rows = billed(settings, user, 2)
    for row in rows:
        assert (row.provider, row.model, row.event_type) == ("openai", "gpt-4o", "TOKEN_USAGE")
        assert (row.input_tokens, row.output_tokens, row.cached_input_tokens) == (
            OPENAI_USAGE["prompt_tokens"], OPENAI_USAGE["completion_tokens"], OPENAI_USAGE["prompt_tokens_details"]["cached_tokens"])
        assert row.metadata["reasoning_tokens"] == "16" and row.metadata["endpoint"] == "chat"
        # default rule: (1234 - 200) x 1 + 200 x 0.5 + 56 x 4, per 1000
        assert row.credits == Decimal("1.358")
    assert_credits_match_ledger(rows)


def test_an_openai_stream_that_asks_for_usage_gets_its_usage_chunk(settings, upstreams, proxy, user):
    marker = unique("m")
    stream = openai_client(proxy.url, user.headers).chat.completions.create(
        model="gpt-4o-mini", messages=ask(marker), stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == OPENAI_USAGE["prompt_tokens"]
    [forwarded] = upstreams.seen(marker)
    assert forwarded.json()["stream_options"] == {"include_usage": True}
    [row] = billed(settings, user, 1)
    assert (row.input_tokens, row.output_tokens) == (OPENAI_USAGE["prompt_tokens"], OPENAI_USAGE["completion_tokens"])


def test_openai_responses_embeddings_and_images_are_billed_by_their_own_usage(settings, upstreams, proxy, user):
    marker = unique("m")
    client = openai_client(proxy.url, user.headers)
    response = client.responses.create(model="gpt-4.1", input=f"hello {marker}", max_output_tokens=50)
    assert response.output_text == TEXT
    events = list(client.responses.create(model="gpt-4.1", input=f"hello {marker}", stream=True))
    assert events[-1].type == "response.completed"
    embedding = client.embeddings.create(model="text-embedding-3-small", input=f"hello {marker}")
    assert embedding.data[0].embedding == [0.25, -0.5, 0.125]
    images = client.images.generate(model="dall-e-3", prompt=f"a cat {marker}", n=2, size="1024x1024", quality="hd")
    assert len(images.data) == 2

    by_kind = {}
    for row in billed(settings, user, 4):
        by_kind.setdefault(row.metadata["endpoint"], []).append(row)
    for row in by_kind["responses"]:
        assert (row.input_tokens, row.output_tokens, row.cached_input_tokens) == (
            RESPONSES_USAGE["input_tokens"], RESPONSES_USAGE["output_tokens"], RESPONSES_USAGE["input_tokens_details"]["cached_tokens"])
    [embedded] = by_kind["embeddings"]
    assert (embedded.event_type, embedded.input_tokens, embedded.output_tokens) == ("EMBEDDING", EMBEDDING_TOKENS, 0)
    [drawn] = by_kind["images"]
    assert (drawn.event_type, drawn.image_count, drawn.image_size, drawn.quality) == ("IMAGE_GENERATION", 2, "1024x1024", "hd")
    assert drawn.credits == Decimal(16)  # 2 images at the 1024x1024:hd rate
    assert_credits_match_ledger(by_kind["responses"] + [embedded, drawn])


def test_anthropic_messages_plain_and_streaming_come_back_unchanged_and_are_billed_exactly(settings, upstreams, proxy, user):
    marker = unique("m")
    direct, proxied = anthropic_client(upstreams.url), anthropic_client(proxy.url, user.headers)
    plain = proxied.messages.create(model="claude-sonnet-4-6", max_tokens=200, messages=ask(marker))
    assert plain.model_dump() == direct.messages.create(model="claude-sonnet-4-6", max_tokens=200, messages=ask(marker)).model_dump()
    with proxied.messages.stream(model="claude-sonnet-4-6", max_tokens=200, messages=ask(marker)) as stream:
        streamed = [event.model_dump() for event in stream]
    with direct.messages.stream(model="claude-sonnet-4-6", max_tokens=200, messages=ask(marker)) as stream:
        assert streamed == [event.model_dump() for event in stream]
    for request in upstreams.seen(marker)[::2]:  # proxied, direct, proxied, direct
        assert request.headers["authorization"] == f"Bearer {PROVIDER_KEYS['anthropic']}"  # how this SDK sends the key
        assert not [name for name in request.headers if name.startswith("x-om-")]

    rows = billed(settings, user, 2)
    everything = ANTHROPIC_USAGE["input_tokens"] + ANTHROPIC_USAGE["cache_creation_input_tokens"] + ANTHROPIC_USAGE["cache_read_input_tokens"]
    for row in rows:
        assert (row.provider, row.input_tokens, row.output_tokens, row.cached_input_tokens) == (
            "anthropic", everything, ANTHROPIC_USAGE["output_tokens"], ANTHROPIC_USAGE["cache_read_input_tokens"])
        assert row.metadata["cache_creation_input_tokens"] == "30"
    assert_credits_match_ledger(rows)


def test_gemini_generate_and_stream_come_back_unchanged_and_are_billed_exactly(settings, upstreams, proxy, user):
    marker = unique("m")
    direct, proxied = gemini_client(upstreams.url), gemini_client(proxy.url, user.headers)
    plain = proxied.models.generate_content(model="gemini-2.5-flash", contents=f"hello {marker}")
    assert plain.text == TEXT
    assert plain.model_dump(exclude={"sdk_http_response"}) == direct.models.generate_content(
        model="gemini-2.5-flash", contents=f"hello {marker}").model_dump(exclude={"sdk_http_response"})
    streamed = [c.text for c in proxied.models.generate_content_stream(model="gemini-2.5-flash", contents=f"hello {marker}")]
    assert streamed == WORDS
    for request in upstreams.seen(marker)[::2]:
        assert request.headers["x-goog-api-key"] == PROVIDER_KEYS["google"]
        assert not [name for name in request.headers if name.startswith("x-om-")]

    rows = billed(settings, user, 2)
    for row in rows:
        assert (row.provider, row.model, row.input_tokens, row.output_tokens, row.cached_input_tokens) == (
            "google", "gemini-2.5-flash", GEMINI_USAGE["promptTokenCount"],
            GEMINI_USAGE["candidatesTokenCount"] + GEMINI_USAGE["thoughtsTokenCount"], GEMINI_USAGE["cachedContentTokenCount"])
    assert_credits_match_ledger(rows)


def test_a_denied_call_never_reaches_upstream_and_each_sdk_reads_the_refusal(settings, tenant, upstreams, proxy):
    broke = new_user(settings, tenant, credits=None)
    funded = new_user(settings, tenant)
    wait_until_allowed(proxy, funded)  # the burn table is in the proxy's view: what is left is the missing credits
    marker = unique("m")
    with pytest.raises(openai.APIStatusError) as refused:
        openai_client(proxy.url, broke.headers).chat.completions.create(model="gpt-4o", messages=ask(marker), stream=True)
    assert refused.value.status_code == 402 and "insufficient credits" in refused.value.message
    assert refused.value.body["type"] == "insufficient_quota"
    with pytest.raises(anthropic.APIStatusError) as refused:
        anthropic_client(proxy.url, broke.headers).messages.create(model="claude-sonnet-4-6", max_tokens=10, messages=ask(marker))
    assert refused.value.status_code == 402 and refused.value.body["error"]["type"] == "billing_error"
    gemini = gemini_client(proxy.url, broke.headers)  # kept: a genai.Client closes its connections when collected
    with pytest.raises(genai_errors.ClientError) as refused:
        gemini.models.generate_content(model="gemini-2.5-flash", contents=marker)
    assert (refused.value.code, refused.value.status) == (402, "RESOURCE_EXHAUSTED")
    assert upstreams.seen(marker) == []

    openai_client(proxy.url, funded.headers).chat.completions.create(model="gpt-4o", messages=ask(unique("m")))
    billed(settings, funded, 1)  # a later call of the same tenant is billed; the denied ones were not
    assert nothing_billed(settings, broke)


def test_an_aborted_stream_bills_what_was_streamed(settings, upstreams, proxy, user):
    disconnects = upstreams.disconnects
    stream = openai_client(proxy.url, user.headers).chat.completions.create(model="stall-3", messages=ask(unique("m")), stream=True)
    received = [next(stream) for _ in range(4)]  # the role chunk and 3 content chunks; the upstream then waits
    assert [c.choices[0].delta.content for c in received[1:]] == WORDS[:3]
    stream.close()
    eventually(lambda: upstreams.disconnects == disconnects + 1, what="the proxy to hang up on the upstream")

    with anthropic_client(proxy.url, user.headers).messages.stream(model="stall-2", max_tokens=500, messages=ask(unique("m"))) as stream:
        texts = []
        for event in stream:
            if event.type == "content_block_delta":
                texts.append(event.delta.text)
                if len(texts) == 2:
                    break
    eventually(lambda: upstreams.disconnects == disconnects + 2, what="the proxy to hang up on the upstream")

    by_model = {row.model: row for row in billed(settings, user, 2)}
    cut = by_model["stall-3"]
    assert cut.output_tokens == 3 and cut.input_tokens > 0 and cut.metadata["usage"] == "estimated"
    cut = by_model["stall-2"]  # Anthropic said the input in message_start; the output is what was streamed
    assert (cut.input_tokens, cut.output_tokens, cut.metadata["usage"]) == (540, 2, "estimated")
    assert_credits_match_ledger(by_model.values())


def test_an_upstream_500_passes_through_and_bills_nothing(settings, upstreams, proxy, user):
    marker = unique("m")
    with pytest.raises(openai.InternalServerError) as failed:
        openai_client(proxy.url, user.headers).chat.completions.create(model="fail-500", messages=ask(marker))
    assert failed.value.status_code == 500 and "server had an error" in failed.value.message
    with pytest.raises(anthropic.InternalServerError):
        anthropic_client(proxy.url, user.headers).messages.create(model="fail-500", max_tokens=10, messages=ask(marker))
    gemini = gemini_client(proxy.url, user.headers)
    with pytest.raises(genai_errors.ServerError) as failed:
        gemini.models.generate_content(model="fail-500", contents=marker)
    assert failed.value.code == 500
    assert len(upstreams.seen(marker)) == 3

    openai_client(proxy.url, user.headers).chat.completions.create(model="gpt-4o", messages=ask(unique("m")))
    [row] = billed(settings, user, 1)  # only the call that succeeded
    assert row.model == "gpt-4o"


def test_a_wrong_key_or_another_tenant_is_refused_in_each_provider_format(settings, tenant, upstreams, proxy):
    marker = unique("m")
    bad = {"X-OM-Api-Key": "om_not-a-key", "X-OM-User-Id": "u1", "X-OM-Feature-Id": "chat"}
    with pytest.raises(openai.AuthenticationError) as refused:
        openai_client(proxy.url, bad).chat.completions.create(model="gpt-4o", messages=ask(marker))
    assert refused.value.body["code"] == "invalid_api_key"
    with pytest.raises(anthropic.AuthenticationError):
        anthropic_client(proxy.url, bad).messages.create(model="claude-sonnet-4-6", max_tokens=10, messages=ask(marker))
    gemini = gemini_client(proxy.url, bad)
    with pytest.raises(genai_errors.ClientError) as refused:
        gemini.models.generate_content(model="gemini-2.5-flash", contents=marker)
    assert (refused.value.code, refused.value.status) == (401, "UNAUTHENTICATED")

    foreign = {"X-OM-Api-Key": tenant.api_key, "X-OM-Customer-Id": "cus_someone_else", "X-OM-User-Id": "u1",
               "X-OM-Feature-Id": "chat"}
    with pytest.raises(openai.PermissionDeniedError):
        openai_client(proxy.url, foreign).chat.completions.create(model="gpt-4o", messages=ask(marker))
    unnamed = {"X-OM-Api-Key": tenant.api_key, "X-OM-Feature-Id": "chat"}
    with pytest.raises(openai.BadRequestError) as refused:
        openai_client(proxy.url, unnamed).chat.completions.create(model="gpt-4o", messages=ask(marker))
    assert "X-OM-User-Id" in refused.value.message
    assert upstreams.seen(marker) == []
    metrics = proxy.metrics()
    assert 'openmonetize_proxy_requests_total{endpoint="unplanned",origin="proxy",provider="openai",status="401"}' in metrics
    assert "openmonetize_proxy_overhead_seconds_bucket" in metrics


def test_an_upstream_that_cannot_be_reached_or_does_not_answer_is_502_or_504_and_bills_nothing(
        settings, tenant, upstreams, tmp_path):
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    impatient = ProxyProcess(upstreams.url, tmp_path / "proxy.log", anthropic_url=closed, PROXY_READ_TIMEOUT_S="1")
    try:
        user = new_user(settings, tenant)
        wait_until_allowed(impatient, user)
        disconnects = upstreams.disconnects
        with pytest.raises(openai.APIStatusError) as failed:
            openai_client(impatient.url, user.headers).chat.completions.create(model="hang", messages=ask(unique("m")))
        assert failed.value.status_code == 504 and failed.value.body["code"] == "timeout"
        eventually(lambda: upstreams.disconnects == disconnects + 1, what="the proxy to give up on the upstream")
        with pytest.raises(anthropic.APIStatusError) as failed:
            anthropic_client(impatient.url, user.headers).messages.create(model="claude-sonnet-4-6", max_tokens=10,
                                                                          messages=ask(unique("m")))
        assert failed.value.status_code == 502 and failed.value.body["error"]["type"] == "api_error"
        openai_client(impatient.url, user.headers).chat.completions.create(model="gpt-4o", messages=ask(unique("m")))
        [row] = billed(settings, user, 1)  # only the call that was answered
        assert row.model == "gpt-4o"
    finally:
        impatient.stop()
