"""Amounts of credits and USD: Decimal, 12 decimal places, never float.

The scale matches the contract's Avro `decimal(38, 12)`, ClickHouse `Decimal(38, 12)` and
Postgres `numeric(38, 12)`. Arithmetic runs in a 50-digit context (Python's default 28 digits
would round a 38-digit sum) and every amount that is stored or emitted is quantized once, at
the end of a calculation, half-to-even ("banker's rounding": no drift across many events).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal, DivisionByZero, InvalidOperation, Overflow
from fractions import Fraction

SCALE = 12
QUANTUM = Decimal(1).scaleb(-SCALE)  # 0.000000000001
MAX_DIGITS = 38
CONTEXT = Context(prec=50, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow])
ZERO = Decimal(0)
_LIMIT = Decimal(10) ** (MAX_DIGITS - SCALE)


def amount(value: Decimal | int | str) -> Decimal:
    """Parse an amount given as Decimal, int or decimal string. Floats are refused: 0.1 as a
    float is not 0.1, and money must not depend on binary rounding."""
    if isinstance(value, float) or isinstance(value, bool):
        raise TypeError(f"amounts are Decimal, int or str, never {type(value).__name__}: {value!r}")
    try:
        result = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"not a decimal number: {value!r}") from None
    if not result.is_finite():
        raise ValueError(f"not a finite amount: {value!r}")
    return result


def quantize(value: Decimal) -> Decimal:
    """Round to 12 decimal places, half to even; refuse what does not fit decimal(38, 12)."""
    result = value.quantize(QUANTUM, rounding=ROUND_HALF_EVEN, context=CONTEXT)
    if abs(result) >= _LIMIT:
        raise OverflowError(f"{value} does not fit decimal({MAX_DIGITS}, {SCALE})")
    return result


def total(values) -> Decimal:
    """Exact sum in the wide context (then quantized)."""
    result = ZERO
    for value in values:
        result = CONTEXT.add(result, value)
    return quantize(result)


# --- integers of 10^-12: the hot path's exact arithmetic -----------------------------------
def to_units(value: Decimal) -> int | None:
    """`value` in units of 10^-12, or None when it has more than 12 decimal places."""
    n, d = value.as_integer_ratio()
    units, rest = divmod(n * 10**SCALE, d)
    return None if rest else units


def round_half_even(n: int, k: int) -> int:
    """n / 10**k rounded to an integer, half to even (as `quantize` rounds)."""
    if k <= 0:
        return n * 10**-k
    unit = 10**k
    q, r = divmod(n, unit)
    twice = 2 * r
    return q + 1 if twice > unit or (twice == unit and q & 1) else q


def from_units(n: int) -> Decimal:
    """An amount given in units of 10^-12, as `quantize` returns it (12 decimal places)."""
    return Decimal(n).scaleb(-SCALE, CONTEXT)


@dataclass(frozen=True)
class ScaledRates:
    """Rates as integers: Σ count × rate / divisor over them, in units of 10^-12, is exactly
    Σ count × weights[name] / 10**shift (which the caller rounds half to even)."""

    weights: Mapping[str, int]
    shift: int


def scaled_rates(rates: Mapping[str, tuple[Decimal, Decimal]], quantities: Collection[str] = ()) -> ScaledRates | None:
    """The (rate, divisor) of each name as integer weights, or None where the 50-digit context
    could round a sum Σ count × rate / divisor of them.

    Such a sum of non-negative parts never rounds when every value it computes has at most 50
    digits. Those of one name's part are at most the amount (< 10^26, or it does not fit
    decimal(38, 12)) times its divisor, with at most the decimals of its rate (plus 12 for a
    count that is a decimal quantity: `quantities` names those rates) and of 1 / divisor; a
    sum of parts has no more digits than its largest part's bound.
    """
    weights: dict[str, Fraction] = {}
    for name, (rate, divisor) in rates.items():
        if rate < 0 or divisor <= 0:
            return None
        inverse = 1 / Fraction(divisor)
        weights[name] = Fraction(rate) * 10**SCALE * inverse
        if _decimals(inverse) is None or _decimals(weights[name]) is None:
            return None
        divisor_digits = 0
        while 10**divisor_digits < divisor:
            divisor_digits += 1
        count_decimals = SCALE if name in quantities else 0  # a quantity is counted in units of 10^-12 too
        digits = MAX_DIGITS - SCALE + divisor_digits + _decimals(Fraction(rate)) + count_decimals + _decimals(inverse)
        if digits > CONTEXT.prec:
            return None
    shift = max((_decimals(w) for w in weights.values()), default=0)
    return ScaledRates({name: int(w * 10**shift) for name, w in weights.items()}, shift)


def _decimals(value: Fraction) -> int | None:
    """The decimal places `value` needs, None when its decimal expansion does not end."""
    d, twos, fives = value.denominator, 0, 0
    while d % 2 == 0:
        d, twos = d // 2, twos + 1
    while d % 5 == 0:
        d, fives = d // 5, fives + 1
    return max(twos, fives) if d == 1 else None
