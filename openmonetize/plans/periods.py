"""The pure rules of plans: when a subscription's periods start, what a period grants, and the
ids of its grant commands. No I/O, unit tested (tests/unit/openmonetize/plans/test_periods.py).

Periods are anchored on the subscription's `starts_at`: period k starts at starts_at + k
periods (months and years computed from the anchor each time, the day clamped to the month's
last, so a subscription started on Jan 31 renews on Feb 28, then Mar 31).

Rollover is carried out by the expiry of the period's grant lots (the wallet burns the
soonest-expiring lot first, then the lower priority, then the oldest):

- `none`: one lot of N credits expiring at the period's end: unused credits lapse;
- `full`: one lot of N credits that never expires: unused credits carry over for good;
- `capped` (cap X): a lot of N - X credits expiring at the period's end and a lot of X credits
  expiring one period later (one lot of N expiring one period later when X >= N). The first is
  burned first, so at the period's end what carries over is min(unused, X), and carried
  credits are burned before the next period's own (same expiry, older): at most X ever carries,
  for one period.
"""

from __future__ import annotations

import calendar
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

PERIODS = ("day", "week", "month", "year")
ROLLOVERS = ("none", "full", "capped")
MAX_PERIOD_COUNT = 366


@dataclass(frozen=True)
class Lot:
    command_id: str
    amount: Decimal
    expires_at: datetime | None


def add_months(anchor: datetime, months: int) -> datetime:
    month0 = anchor.month - 1 + months
    year, month = anchor.year + month0 // 12, month0 % 12 + 1
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return anchor.replace(year=year, month=month, day=day)


def period_start(starts_at: datetime, period: str, count: int, k: int) -> datetime:
    """The start of period number k (0 is the first) of a subscription started at `starts_at`."""
    n = k * count
    if period == "day":
        return starts_at + timedelta(days=n)
    if period == "week":
        return starts_at + timedelta(weeks=n)
    if period == "month":
        return add_months(starts_at, n)
    if period == "year":
        return add_months(starts_at, 12 * n)
    raise ValueError(f"unknown period {period!r}")


def command_id(customer_id: str, subscription_id: str, start: datetime, part: str = "") -> str:
    """The grant command's id: from (tenant, subscription, period start), so every run of the
    scheduler, concurrent or after a crash, writes the same command for the same period."""
    text = f"plan\x1f{customer_id}\x1f{subscription_id}\x1f{start.isoformat()}\x1f{part}"
    return "cmd_plan_" + hashlib.sha256(text.encode()).hexdigest()[:32]


def lots(
    customer_id: str, subscription_id: str, credits: Decimal, rollover: str, cap: Decimal | None,
    start: datetime, end: datetime, next_end: datetime,
) -> list[Lot]:
    """The lots period [start, end) grants; `next_end` is the end of the following period."""
    first = command_id(customer_id, subscription_id, start)
    if rollover == "none":
        return [Lot(first, credits, end)]
    if rollover == "full":
        return [Lot(first, credits, None)]
    if rollover != "capped" or cap is None:
        raise ValueError(f"unknown rollover {rollover!r} (cap {cap})")
    if cap >= credits:
        return [Lot(first, credits, next_end)]
    return [Lot(first, credits - cap, end), Lot(command_id(customer_id, subscription_id, start, "rollover"), cap, next_end)]
