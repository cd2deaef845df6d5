"""Provider and model names as clients spell them → the ids of the provider-price dataset.

Clients name one model many ways: `OPENAI`, `OpenAI` or `openai`; `claude-3.5-sonnet`,
`claude-3-5-sonnet-20241022` or `claude-3-5-sonnet-latest`; `gpt-4-turbo-2024-04-09` for
`gpt-4-turbo`. Provider prices are keyed by the genai-prices dataset's ids (`prices.snapshot`)
and burn-table rules by whatever the tenant wrote, so lookups resolve both sides to the
dataset's ids with the dataset's own matching rules (each model lists the names that refer to
it, each provider the names and model prefixes that identify it).

Resolution happens at lookup time only: the stored event and the rule keys keep what the
client sent. The stream worker resolves per event, so every answer is cached (bounded: names
come from clients).
"""

from __future__ import annotations

from functools import lru_cache

# Where a model name alone is looked for when no provider's name rule claims it (`dall-e-3`,
# `text-embedding-3-small`): the model owners the seed product names, in this order.
MODEL_OWNERS = ("openai", "anthropic", "google", "mistral", "cohere")
_CACHE = 8192


def warm() -> None:
    """Load the dataset now (its first use costs ~0.2 s): before a replay forks its readers,
    so that they share it instead of each loading its own."""
    _providers()


def _providers() -> list:
    from genai_prices.data_snapshot import get_snapshot

    return get_snapshot().providers


def _provider(name: str):
    from genai_prices.data_snapshot import find_provider_by_id

    return find_provider_by_id(_providers(), name)


@lru_cache(maxsize=_CACHE)
def provider_id(name: str) -> str:
    """The dataset's id of a provider name (`OPENAI`, `OpenAI`, `gemini`, `bedrock`), else the
    name lower-cased and stripped."""
    found = _provider(name)
    return found.id if found is not None else name.strip().lower()


def _own_model(provider, model: str) -> str | None:
    """The id of the model `model` names in `provider`'s own list (no fallback providers)."""
    found = provider.find_model(model)
    return found.id if found is not None else None


@lru_cache(maxsize=_CACHE)
def canonical(provider: str, model: str) -> tuple[str, str]:
    """(provider id, model id) as the dataset names them; a name the dataset does not know
    stays as sent (the provider lower-cased). Where a tenant's price override is stored."""
    found = _provider(provider)
    if found is None:
        return provider.strip().lower(), model
    return found.id, _own_model(found, model) or model


@lru_cache(maxsize=_CACHE)
def price_keys(provider: str, model: str) -> tuple[tuple[str, str], ...]:
    """The (provider, model) keys a price is looked up under, in order: as sent; the dataset's
    ids; then, for a model the provider's own list lacks, the providers the dataset says it
    resells (Azure → OpenAI's models, ...), as genai-prices itself falls back."""
    keys = [(provider, model), canonical(provider, model)]
    found = _provider(provider)
    resold = () if found is None or _own_model(found, model) is not None else found.fallback_model_providers or ()
    for fallback_id in resold:
        fallback = _provider(fallback_id)
        if fallback is not None and (model_id := _own_model(fallback, model)) is not None:
            keys.append((fallback.id, model_id))
    return tuple(dict.fromkeys(keys))


@lru_cache(maxsize=_CACHE)
def canonical_model(model: str) -> str | None:
    """The dataset's id of a model name without its provider (a burn-table rule key, or the
    model of an event matched against them): the provider is the one whose name rule claims
    the model (`claude-…` → anthropic, `gpt-…` → openai), else the first of MODEL_OWNERS that
    lists it. None when the dataset does not know the name."""
    ref = model.lower()
    claimed = [p for p in _providers() if p.model_match is not None and p.model_match.is_match(ref)][:1]
    for owner in claimed or [p for p in map(_provider, MODEL_OWNERS) if p is not None]:
        found = owner.find_model(model, all_providers=_providers())
        if found is not None:
            return found.id
    return None
