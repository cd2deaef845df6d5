"""Amounts of credits and USD: Decimal, 12 decimal places, never float.

The scale matches the contract's Avro `decimal(38, 12)`, ClickHouse `Decimal(38, 12)` and
Postgres `numeric(38, 12)`. Arithmetic runs in a 50-digit context (Python's default 28 digits
would round a 38-digit sum) and every amount that is stored or emitted is quantized once, at
the end of a calculation, half-to-even ("banker's rounding": no drift across many events).
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Context, Decimal, DivisionByZero, InvalidOperation, Overflow

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
