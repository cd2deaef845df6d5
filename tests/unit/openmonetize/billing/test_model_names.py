"""Names as clients spell them resolve to the provider-price dataset's ids (genai-prices)."""

from __future__ import annotations

from datetime import date

import pytest

from openmonetize.billing import model_names
from openmonetize.billing.prices import snapshot


@pytest.mark.parametrize("name, expected", [
    ("openai", "openai"),
    ("OPENAI", "openai"),  # the seed's events.track examples
    ("OpenAI", "openai"),
    (" Anthropic ", "anthropic"),
    ("gemini", "google"),
    ("bedrock", "aws"),
    ("my-Host", "my-host"),  # unknown to the dataset: lower-cased
])
def test_provider_id(name, expected):
    assert model_names.provider_id(name) == expected


@pytest.mark.parametrize("model, expected", [
    ("gpt-4-turbo", "gpt-4-turbo"),
    ("gpt-4-turbo-2024-04-09", "gpt-4-turbo"),  # what OpenAI answers for gpt-4-turbo
    ("GPT-4-Turbo", "gpt-4-turbo"),
    ("gpt-4", "gpt-4"),  # not gpt-4-turbo: names resolve whole, not by prefix
    ("gpt-4-0613", "gpt-4"),
    ("claude-3.5-sonnet", "claude-3-5-sonnet"),  # the seed's burn-table key
    ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
    ("claude-3-5-sonnet-latest", "claude-3-5-sonnet"),
    ("gemini-1.5-pro-002", "gemini-1.5-pro"),
    ("text-embedding-3-small", "text-embedding-3-small"),  # no provider claims it by name: found in MODEL_OWNERS
    ("dall-e-3", None),  # not in the dataset
    ("default", None),  # burn-table keys that are not models
    ("TOKEN_USAGE", None),
    ("CUSTOM:pages", None),
])
def test_canonical_model(model, expected):
    assert model_names.canonical_model(model) == expected


@pytest.mark.parametrize("provider, model, expected", [
    ("openai", "gpt-4-turbo", ("openai", "gpt-4-turbo")),
    ("OPENAI", "gpt-4-turbo-2024-04-09", ("openai", "gpt-4-turbo")),
    ("anthropic", "claude-3.5-sonnet", ("anthropic", "claude-3-5-sonnet")),
    ("azure", "gpt-4-turbo", ("azure", "gpt-4-turbo")),  # an override stays Azure's, whoever the dataset falls back to
    ("openai", "my-fine-tune", ("openai", "my-fine-tune")),
    ("My-Host", "Some-Model", ("my-host", "Some-Model")),
])
def test_canonical(provider, model, expected):
    assert model_names.canonical(provider, model) == expected


@pytest.mark.parametrize("provider, model, expected", [
    ("openai", "gpt-4-turbo", (("openai", "gpt-4-turbo"),)),
    ("OPENAI", "gpt-4-turbo", (("OPENAI", "gpt-4-turbo"), ("openai", "gpt-4-turbo"))),
    ("anthropic", "claude-3.5-sonnet", (("anthropic", "claude-3.5-sonnet"), ("anthropic", "claude-3-5-sonnet"))),
    # Azure resells OpenAI's models: OpenAI's price is looked up last.
    ("azure", "gpt-4-turbo-2024-04-09", (("azure", "gpt-4-turbo-2024-04-09"), ("openai", "gpt-4-turbo"))),
    ("google", "claude-3-5-sonnet", (("google", "claude-3-5-sonnet"),)),  # Vertex lists it: no fallback to Anthropic
    ("my-host", "m", (("my-host", "m"),)),
])
def test_price_keys_as_sent_first_then_the_dataset_names(provider, model, expected):
    assert model_names.price_keys(provider, model) == expected


def test_the_dataset_names_resolve_to_themselves():
    """The catalog stores the dataset's prices under (provider id, model id): an override PUT
    under those names lands in the same group."""
    moved = [(p.provider, p.model, model_names.canonical(p.provider, p.model)) for p in snapshot(date(2026, 1, 1), "v")
             if model_names.canonical(p.provider, p.model) != (p.provider, p.model)]
    assert moved == []


def test_answers_are_cached():
    model_names.canonical_model.cache_clear()
    model_names.canonical_model("claude-3.5-sonnet")
    model_names.canonical_model("claude-3.5-sonnet")
    assert model_names.canonical_model.cache_info().hits == 1
