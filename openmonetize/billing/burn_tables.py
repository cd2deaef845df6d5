"""Burn tables: how many credits a tenant burns per unit of usage, versioned by effective date.

Shape (the seed product's): `rules` maps a key to a rule, e.g.

    {"gpt-4o": {"input_tokens": "2.5", "output_tokens": "10", "cached_input_tokens": "1.25", "per_unit": 1000},
     "dall-e-3": {"images": {"1024x1024": "4", "1024x1792:hd": "12"}, "image": "4"},
     "CUSTOM:requests": {"unit": "0.01"},
     "default": {"input_tokens": "1", "output_tokens": "4", "per_unit": 1000}}

Every rate is credits per `per_unit` units (tokens, images or quantity; default 1). A rule is
found by the event's model, then by the model the provider-price dataset says both name
(`model_names.canonical_model`: a `claude-3.5-sonnet` rule rates `claude-3-5-sonnet-20241022`,
a `gpt-4-turbo` rule rates `gpt-4-turbo-2024-04-09`), then `EVENT_TYPE:unit_type`, then
`EVENT_TYPE`, then `default`.
Cached input tokens burn at `cached_input_tokens`, or at the input rate when the rule has none.
An image burns at `images["size:quality"]`, else `images["size"]`, else `image`.

Versions are immutable: a new version with a later (or, for rebilling, earlier) `effective_from`
supersedes, and an event is rated with the version in force at its timestamp.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import cached_property

from openmonetize.billing.model_names import canonical_model
from openmonetize.billing.money import ScaledRates, amount, scaled_rates

TOKEN_RATES = ("input_tokens", "output_tokens", "cached_input_tokens")
RULE_KEYS = frozenset({*TOKEN_RATES, "image", "images", "unit", "per_unit"})
DEFAULT_RULE = "default"


class RulesError(ValueError):
    """Every problem found in a burn table's rules, each as (field path, reason)."""

    def __init__(self, problems: list[tuple[str, str]]):
        super().__init__("; ".join(f"{path}: {reason}" for path, reason in problems))
        self.problems = problems


@dataclass(frozen=True)
class RateRule:
    per_unit: Decimal = Decimal(1)
    input_tokens: Decimal | None = None
    output_tokens: Decimal | None = None
    cached_input_tokens: Decimal | None = None
    image: Decimal | None = None
    images: Mapping[str, Decimal] = field(default_factory=dict)
    unit: Decimal | None = None

    def image_rate(self, size: str | None, quality: str | None) -> Decimal | None:
        key = self.image_key(size, quality)
        return self.image if key is None else self.images[key]

    def image_key(self, size: str | None, quality: str | None) -> str | None:
        """The `images` key an image of this size and quality burns at; None: the `image` rate."""
        if size is not None:
            if quality is not None and f"{size}:{quality}" in self.images:
                return f"{size}:{quality}"
            if size in self.images:
                return size
        return None

    @cached_property
    def scaled(self) -> ScaledRates | None:
        """The rates as integer weights (per token, image or unit of quantity, over per_unit),
        for rating's integer path; None when they are not exact in it. Image rates are named
        `images:{key}`; cached tokens without a rate of their own weigh as input tokens."""
        rates = {name: getattr(self, name) for name in (*TOKEN_RATES, "image", "unit")}
        if rates["cached_input_tokens"] is None:
            rates["cached_input_tokens"] = self.input_tokens
        rates.update({f"images:{key}": rate for key, rate in self.images.items()})
        return scaled_rates({name: (rate, self.per_unit) for name, rate in rates.items() if rate is not None},
                            quantities=("unit",))


@dataclass(frozen=True)
class BurnTable:
    burn_table_id: str
    customer_id: str
    name: str
    version: int
    effective_from: datetime
    rules: Mapping[str, RateRule]

    def rule_for(self, event_type: str, model: str | None, unit_type: str | None) -> tuple[str, RateRule] | None:
        """The rule that applies to an event, with the key it was found under."""
        if model is not None:
            key = model if model in self.rules else self._keys_by_model.get(canonical_model(model))
            if key is not None:
                return key, self.rules[key]
        for key in (f"{event_type}:{unit_type}" if unit_type else None, event_type, DEFAULT_RULE):
            if key is not None and key in self.rules:
                return key, self.rules[key]
        return None

    @cached_property
    def _keys_by_model(self) -> dict[str, str]:
        """Rule keys by the dataset model they name; of two spellings of one model, the key that
        is the dataset's id, else the first in sort order."""
        found: dict[str, str] = {}
        for key in sorted(self.rules):
            model = canonical_model(key)
            if model is not None and (model not in found or key == model):
                found[model] = key
        return found


def in_force(versions: Sequence[BurnTable], at: datetime) -> BurnTable | None:
    """The version in force at `at`: the latest effective_from not after it (ties: highest version)."""
    best = None
    for table in versions:
        if table.effective_from <= at and (
            best is None or (table.effective_from, table.version) > (best.effective_from, best.version)
        ):
            best = table
    return best


def parse_rules(raw: Mapping) -> dict[str, RateRule]:
    """Validate a rules mapping; raise RulesError naming every bad field (e.g. `rules.gpt-4o.per_unit`)."""
    problems: list[tuple[str, str]] = []
    if not isinstance(raw, Mapping) or not raw:
        raise RulesError([("rules", "must be a non-empty object of rule key -> rates")])
    rules = {}
    for key, spec in raw.items():
        path = f"rules.{key}"
        if not isinstance(key, str) or not key.strip():
            problems.append((path, "rule keys are non-empty strings (a model, EVENT_TYPE, EVENT_TYPE:unit or default)"))
            continue
        if not isinstance(spec, Mapping):
            problems.append((path, "must be an object of rates"))
            continue
        unknown = sorted(set(spec) - RULE_KEYS)
        for name in unknown:
            problems.append((f"{path}.{name}", f"unknown rate; known: {', '.join(sorted(RULE_KEYS))}"))
        values: dict = {}
        for name in (*TOKEN_RATES, "image", "unit", "per_unit"):
            if name in spec:
                values[name] = _rate(spec[name], f"{path}.{name}", problems, positive=name == "per_unit")
        if "images" in spec:
            images = spec["images"]
            if not isinstance(images, Mapping) or not images:
                problems.append((f"{path}.images", "must be a non-empty object of size or size:quality -> rate"))
            else:
                values["images"] = {
                    str(k): _rate(v, f"{path}.images.{k}", problems, positive=False) for k, v in images.items()
                }
        if not any(name in values for name in (*TOKEN_RATES, "image", "images", "unit")):
            problems.append((path, "has no rate (input_tokens, output_tokens, cached_input_tokens, image, images or unit)"))
        rules[key] = values
    if problems:
        raise RulesError(problems)
    return {key: RateRule(**values) for key, values in rules.items()}


def _rate(value, path: str, problems: list[tuple[str, str]], positive: bool) -> Decimal:
    try:
        rate = amount(value)
    except (TypeError, ValueError) as exc:
        problems.append((path, str(exc)))
        return Decimal(0)
    if positive and rate <= 0:
        problems.append((path, f"must be > 0, got {rate}"))
    elif rate < 0:
        problems.append((path, f"must be >= 0, got {rate}"))
    return rate
