"""Template filters for amounts and times. Amounts come as Decimal or decimal strings and are
printed exactly (digit grouping, trailing zeros dropped): never through a float."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation


def amount(value) -> str:
    if value is None or value == "":
        return "—"
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation:
        return str(value)
    if number == number.to_integral_value():
        return f"{number.quantize(Decimal(1)):,f}"
    return f"{number.normalize():,f}"


def when(value) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value.tzinfo else value.isoformat()


def install(env) -> None:
    env.filters["credits"] = amount
    env.filters["usd"] = amount
    env.filters["when"] = when
