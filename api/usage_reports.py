"""`GET /v1/reports/usage` without HTTP: its query parameters checked, the SQL it runs on the
ClickHouse rollups, and the rows rendered. Pure, so every rule is unit tested
(tests/unit/api/test_usage_reports.py).

- Times are UTC. `from` and `to` are ISO-8601 instants WITH a timezone (`Z` or an offset; a
  time without one is refused, not guessed) or plain dates (midnight UTC). `from` is inclusive,
  `to` exclusive.
- The rollups (usage_hourly, usage_daily) cannot split an hour or a day, so `from` and `to`
  must fall on a bucket boundary: a whole hour for `hour` and `total`, midnight UTC for `day`.
  A range is refused rather than silently widened.
- Defaults: `granularity=day`; `to` = the end of the current bucket (the bucket in progress is
  included); `from` = 30 days before `to`.
- Widest range: 31 days hourly, 731 days daily or total. At most MAX_LIMIT rows; one more is
  asked for, to tell the caller the answer was truncated.
- `total` reads usage_daily when both ends are at midnight, usage_hourly otherwise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import msgspec
from msgspec import UNSET, UnsetType

from api.errors import ApiError
from openmonetize.billing.money import CONTEXT
from openmonetize.catalog.json_codec import decimal_text

# Accepted `group_by` values and the column (and response key) each one is.
DIMENSIONS = {
    "user": "user_id",
    "team": "team_id",
    "wallet": "wallet_id",
    "feature": "feature_id",
    "provider": "provider",
    "model": "model",
    "event_type": "event_type",
}
GRANULARITIES = ("hour", "day", "total")
DEFAULT_GRANULARITY = "day"
DEFAULT_SPAN = timedelta(days=30)
MAX_SPAN = {"hour": timedelta(days=31), "day": timedelta(days=731), "total": timedelta(days=731)}
DEFAULT_LIMIT = 1_000
MAX_LIMIT = 10_000
EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)  # ClickHouse DateTime's range
LATEST = datetime(2100, 1, 1, tzinfo=timezone.utc)
METRICS = (
    "events", "input_tokens", "output_tokens", "cached_input_tokens", "image_count",
    "quantity", "credits", "usd_cost", "revenue_usd", "margin_usd",
)
_HOUR, _DAY = timedelta(hours=1), timedelta(days=1)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DIGITS = re.compile(r"[0-9]{1,9}")
_PERCENT = Decimal("0.01")


@dataclass(frozen=True)
class ReportQuery:
    customer_id: str
    start: datetime  # inclusive, UTC
    end: datetime  # exclusive, UTC
    granularity: str
    group_by: tuple[str, ...]  # DIMENSIONS keys, in the order asked
    limit: int

    @property
    def daily(self) -> bool:
        """Whether usage_daily answers (else usage_hourly)."""
        return self.granularity == "day" or (
            self.granularity == "total" and _aligned(self.start, _DAY) and _aligned(self.end, _DAY)
        )


def invalid(field: str, message: str) -> ApiError:
    return ApiError(422, "invalid_report_query", message, field)


def parse(
    customer_id: str,
    *,
    group_by: str | None,
    start: str | None,
    end: str | None,
    granularity: str | None,
    limit: str | None,
    now: datetime,
) -> ReportQuery:
    """The query parameters as a ReportQuery, or a 422 naming the parameter at fault."""
    granularity = granularity if granularity is not None else DEFAULT_GRANULARITY
    if granularity not in GRANULARITIES:
        raise invalid("granularity", f"granularity must be one of {list(GRANULARITIES)}, not {granularity!r}")
    boundary = _DAY if granularity == "day" else _HOUR
    default_step = _HOUR if granularity == "hour" else _DAY  # a default `total` reads usage_daily
    end_at = _instant(end, "to", boundary) if end is not None else _floor(now, default_step) + default_step
    start_at = _instant(start, "from", boundary) if start is not None else end_at - DEFAULT_SPAN
    if start_at >= end_at:
        raise invalid("from", f"from ({_iso(start_at)}) must be before to ({_iso(end_at)})")
    if end_at - start_at > MAX_SPAN[granularity]:
        raise invalid("from", f"from..to spans {end_at - start_at}; granularity={granularity} allows at most "
                              f"{MAX_SPAN[granularity].days} days: narrow the range"
                              + (" or use granularity=day" if granularity == "hour" else ""))
    return ReportQuery(customer_id, start_at, end_at, granularity, _dimensions(group_by), _limit(limit))


def _instant(text: str, field: str, step: timedelta) -> datetime:
    if _DATE.fullmatch(text):
        try:
            value = datetime.combine(date.fromisoformat(text), datetime.min.time(), timezone.utc)
        except ValueError:
            raise invalid(field, f"{field} {text!r} is not a valid date") from None
    else:
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            hint = " (a `+` in a URL means a space: write the offset as %2B or use Z)" if " " in text else ""
            raise invalid(field, f"{field} {text!r} is not an ISO-8601 time such as 2026-11-01T00:00:00Z{hint}") from None
        if value.tzinfo is None:
            raise invalid(field, f"{field} must carry a timezone (e.g. 2026-11-01T00:00:00Z); times are not guessed")
        value = value.astimezone(timezone.utc)
    if not EARLIEST <= value <= LATEST:
        raise invalid(field, f"{field} must be between {_iso(EARLIEST)} and {_iso(LATEST)}")
    if not _aligned(value, step):
        unit = "midnight UTC" if step == _DAY else "a whole hour (UTC)"
        raise invalid(field, f"{field} must fall on {unit}: the rollups cannot split a bucket; got {_iso(value)}")
    return value


def _dimensions(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    names = [name.strip() for name in text.split(",")]
    for name in names:
        if name not in DIMENSIONS:
            raise invalid("group_by", f"group_by: {name!r} is not one of {list(DIMENSIONS)}")
    return tuple(dict.fromkeys(names))


def _limit(text: str | None) -> int:
    if text is None:
        return DEFAULT_LIMIT
    if not _DIGITS.fullmatch(text) or not 1 <= int(text) <= MAX_LIMIT:
        raise invalid("limit", f"limit must be a whole number from 1 to {MAX_LIMIT}, not {text!r}")
    return int(text)


def _floor(value: datetime, step: timedelta) -> datetime:
    return value - (value - EARLIEST) % step


def _aligned(value: datetime, step: timedelta) -> bool:
    return (value - EARLIEST) % step == timedelta(0)


# --- SQL -------------------------------------------------------------------------------------

def rows_sql(query: ReportQuery, database: str) -> tuple[str, dict]:
    """The rows: one per bucket and group, sums of the rollup (SummingMergeTree rows are only
    summed at merge time, so the query sums again), in bucket then group order, at most
    `limit + 1` of them (the extra one says the answer is truncated)."""
    keys = [DIMENSIONS[name] for name in query.group_by]
    bucket = [] if query.granularity == "total" else [f"{_time_column(query)} AS bucket"]
    grouping = ", ".join((["bucket"] if bucket else []) + keys)
    sql = f"SELECT {', '.join(bucket + keys + [_SUMS])} FROM {_source(query, database)}"
    if grouping:
        sql += f" GROUP BY {grouping} ORDER BY {grouping}"
    return sql + " LIMIT {limit:UInt32}", {**_where_params(query), "limit": query.limit + 1}


def totals_sql(query: ReportQuery, database: str) -> tuple[str, dict]:
    """The sums over the whole range, whatever the limit cut from the rows."""
    return f"SELECT {_SUMS} FROM {_source(query, database)}", _where_params(query)


_SUMS = ", ".join(f"sum({metric}) AS {metric}" for metric in METRICS)


def _time_column(query: ReportQuery) -> str:
    return "day" if query.daily else "hour"


def _source(query: ReportQuery, database: str) -> str:
    column, kind = ("day", "Date") if query.daily else ("hour", "DateTime('UTC')")
    table = "usage_daily" if query.daily else "usage_hourly"
    return (f"{database}.{table} WHERE customer_id = {{customer_id:String}}"
            f" AND {column} >= {{start:{kind}}} AND {column} < {{end:{kind}}}")


def _where_params(query: ReportQuery) -> dict:
    if query.daily:
        return {"customer_id": query.customer_id, "start": query.start.date(), "end": query.end.date()}
    return {"customer_id": query.customer_id, "start": query.start, "end": query.end}


# --- response --------------------------------------------------------------------------------

class Totals(msgspec.Struct, kw_only=True):
    events: int
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    image_count: int
    quantity: str
    credits: str
    usd_cost: str
    revenue_usd: str
    margin_usd: str
    margin_percent: str | None  # margin_usd / revenue_usd x 100, 2 places; null without revenue


class UsageRow(Totals, kw_only=True):
    bucket: str | None  # the bucket's start (UTC); null for granularity=total
    # The grouped-by keys only; null where the event had none (an empty team_id).
    user_id: str | None | UnsetType = UNSET
    team_id: str | None | UnsetType = UNSET
    wallet_id: str | None | UnsetType = UNSET
    feature_id: str | None | UnsetType = UNSET
    provider: str | None | UnsetType = UNSET
    model: str | None | UnsetType = UNSET
    event_type: str | None | UnsetType = UNSET


class UsageReport(msgspec.Struct):
    customer_id: str
    from_: str = msgspec.field(name="from")
    to: str
    granularity: str
    group_by: list[str]
    limit: int
    truncated: bool  # more rows matched than `limit`; `totals` still covers them all
    rows: list[UsageRow]
    totals: Totals


def report(query: ReportQuery, rows: list[dict], totals: dict) -> UsageReport:
    """The response, from the rows (`limit + 1` at most) and totals as ClickHouse answered them."""
    return UsageReport(
        query.customer_id, _iso(query.start), _iso(query.end), query.granularity, list(query.group_by),
        query.limit, len(rows) > query.limit, [_row(query, row) for row in rows[: query.limit]],
        Totals(**_metrics(totals)),
    )


def _row(query: ReportQuery, row: dict) -> UsageRow:
    bucket = row.get("bucket")
    if isinstance(bucket, datetime):
        bucket = _iso(bucket.replace(tzinfo=timezone.utc))
    elif isinstance(bucket, date):
        bucket = _iso(datetime.combine(bucket, datetime.min.time(), timezone.utc))
    keys = {DIMENSIONS[name]: row[DIMENSIONS[name]] or None for name in query.group_by}
    return UsageRow(bucket=bucket, **keys, **_metrics(row))


def _metrics(row: dict) -> dict:
    revenue, margin = row["revenue_usd"], row["margin_usd"]
    percent = None if revenue == 0 else CONTEXT.multiply(CONTEXT.divide(margin, revenue), 100).quantize(_PERCENT, context=CONTEXT)
    return {
        **{name: int(row[name]) for name in METRICS[:5]},
        **{name: decimal_text(row[name]) for name in METRICS[5:]},
        "margin_percent": None if percent is None else decimal_text(percent),
    }


def _iso(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
