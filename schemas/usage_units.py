"""The units of a usage event (tokens, cached tokens, images, audio and custom units) and the
one check of them, used by every path that accepts units: ingest (schemas/usage_event.py),
rating previews (`POST /v1/rating/calculate`), entitlement estimates and the AI proxy's.

Token semantics: `input_tokens` counts ALL input tokens, cached ones included (OpenAI's
`prompt_tokens`); `cached_input_tokens` is the part of them served from the provider's cache,
so it can't exceed `input_tokens`. `quantity` (with `unit_type`) counts audio seconds, pages,
requests... exactly, at most 12 decimal places (the Avro decimal(38, 12) it is stored as).

The rules are the same everywhere; the wording of a refusal is part of each route's API
(clients and tests read it), so a caller passes its `Wording`.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

TOKEN_FIELDS = ("input_tokens", "output_tokens", "cached_input_tokens")
COUNT_FIELDS = (*TOKEN_FIELDS, "image_count")
UNIT_FIELDS = (*COUNT_FIELDS, "image_size", "quality", "unit_type", "quantity")
QUANTITY_SCALE = 12  # matches the Avro decimal(38, 12) of `quantity`
CACHED_RULE = "cannot exceed input_tokens (cached tokens are part of the input)"


class UnitsError(ValueError):
    """Units that can't be accepted: which field, and why."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class UnitBounds:
    """The bounds the units must respect (None: unbounded); from the settings (EVENT_MAX_*)."""

    max_tokens: int | None = None
    max_images: int | None = None
    max_quantity: Decimal | None = None
    min_images: int = 0
    quantity_scale: int | None = None  # at most this many decimal places


@dataclass(frozen=True)
class Wording:
    """How one route words the refusals (str.format fields: high, setting, value)."""

    above: str = "must be <= {high} ({setting}), got {value}"
    quantity_not_finite: str = "must be a finite number, got {value}"
    quantity_negative: str = "must be >= 0, got {value}"
    quantity_above: str = "must be <= {high} (EVENT_MAX_QUANTITY), got {value}"
    quantity_places: str = "at most {high} decimal places, got {value}"


EVENT_WORDING = Wording()  # ingest: schemas/usage_event.py
ESTIMATE_WORDING = Wording(  # entitlement estimates (and the proxy's)
    above="must be at most {high} ({setting}), got {value}",
    quantity_not_finite="must be a finite number >= 0, got {value}",
    quantity_negative="must be a finite number >= 0, got {value}",
    quantity_above="must be at most {high} (EVENT_MAX_QUANTITY), got {value:.6e}",
    quantity_places="at most {high} decimal places",
)
RATING_WORDING = Wording(  # POST /v1/rating/calculate
    quantity_not_finite="must be a finite number >= 0, got {value}",
    quantity_negative="must be a finite number >= 0, got {value}",
)


def units_of(source: object) -> dict:
    """The unit fields of anything that has some of them (the others None), to build another."""
    return {name: getattr(source, name, None) for name in UNIT_FIELDS}


def check_units(units: object, bounds: UnitBounds, wording: Wording = EVENT_WORDING, *,
                tokens: tuple[str, ...] = TOKEN_FIELDS, prefix: str = "") -> None:
    """Raise UnitsError naming the first field (`prefix` + its name) that breaks a rule.

    `units` is anything with the unit attributes (UNIT_FIELDS, None when not given); `tokens`
    the token counts to bound (an estimate adds max_output_tokens)."""
    for name in tokens:
        _in_range(units, name, 0, bounds.max_tokens, "EVENT_MAX_TOKENS", wording, prefix)
    cached = getattr(units, "cached_input_tokens")
    if cached is not None and cached > (getattr(units, "input_tokens") or 0):
        raise UnitsError(prefix + "cached_input_tokens", CACHED_RULE)
    _in_range(units, "image_count", bounds.min_images, bounds.max_images, "EVENT_MAX_IMAGES", wording, prefix)
    quantity = getattr(units, "quantity")
    if quantity is not None:
        check_quantity(quantity, bounds, wording, prefix + "quantity")


def _in_range(units: object, name: str, low: int, high: int | None, setting: str, wording: Wording,
              prefix: str) -> None:
    value = getattr(units, name)
    if value is None:
        return
    if value < low:
        raise UnitsError(prefix + name, f"must be >= {low}, got {value}")
    if high is not None and value > high:
        raise UnitsError(prefix + name, wording.above.format(high=high, setting=setting, value=value))


def check_quantity(quantity: Decimal, bounds: UnitBounds, wording: Wording = EVENT_WORDING,
                   field: str = "quantity") -> None:
    """The quantity's part of `check_units`, for a caller that parses the quantity itself."""
    if not quantity.is_finite():
        raise UnitsError(field, wording.quantity_not_finite.format(value=quantity))
    if quantity < 0:
        raise UnitsError(field, wording.quantity_negative.format(value=quantity))
    if bounds.max_quantity is not None and quantity > bounds.max_quantity:
        raise UnitsError(field, wording.quantity_above.format(high=bounds.max_quantity, value=quantity))
    scale = bounds.quantity_scale
    if scale is not None and quantity.as_tuple().exponent < -scale:  # type: ignore[operator]
        raise UnitsError(field, wording.quantity_places.format(high=scale, value=quantity))
