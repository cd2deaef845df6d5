"""The usage report's pure parts: parameters checked with the field at fault, the SQL on the
rollups (user input only ever in bound parameters), and the rendering of rows and totals."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

import msgspec
import pytest

from api.errors import ApiError
from api.usage_reports import ReportQuery, parse, report, rows_sql, totals_sql

NOW = datetime(2026, 11, 26, 12, 34, 56, tzinfo=timezone.utc)
UTC = timezone.utc


def query(**params) -> ReportQuery:
    given = {"group_by": None, "start": None, "end": None, "granularity": None, "limit": None, **params}
    return parse("cus_a", now=NOW, **given)


def refused(**params) -> ApiError:
    with pytest.raises(ApiError) as raised:
        query(**params)
    assert raised.value.status == 422 and raised.value.code == "invalid_report_query"
    return raised.value


# --- parameters ------------------------------------------------------------------------------

def test_defaults_are_daily_over_the_30_days_up_to_the_end_of_today():
    q = query()
    assert (q.granularity, q.group_by, q.limit) == ("day", (), 1000)
    assert q.start == datetime(2026, 10, 28, tzinfo=UTC)
    assert q.end == datetime(2026, 11, 27, tzinfo=UTC)
    assert q.daily


def test_default_hourly_range_ends_with_the_current_hour():
    q = query(granularity="hour")
    assert q.end == datetime(2026, 11, 26, 13, tzinfo=UTC)
    assert q.start == datetime(2026, 10, 27, 13, tzinfo=UTC)
    assert not q.daily


def test_only_from_given_ends_at_the_default_end_and_only_to_given_starts_30_days_before():
    assert query(start="2026-11-20").end == datetime(2026, 11, 27, tzinfo=UTC)
    assert query(end="2026-11-10").start == datetime(2026, 10, 11, tzinfo=UTC)


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-11-01", datetime(2026, 11, 1, tzinfo=UTC)),
    ("2026-11-01T00:00:00Z", datetime(2026, 11, 1, tzinfo=UTC)),
    ("2026-11-01T05:30:00+05:30", datetime(2026, 11, 1, tzinfo=UTC)),  # converted to UTC
    ("2026-10-31T19:00:00-05:00", datetime(2026, 11, 1, tzinfo=UTC)),
])
def test_from_accepts_dates_and_instants_with_a_timezone(text, expected):
    assert query(start=text).start == expected


@pytest.mark.parametrize(("text", "says"), [
    ("2026-11-01T00:00:00", "must carry a timezone"),
    ("yesterday", "not an ISO-8601 time"),
    ("2026-11-01T00:00:00 05:30", "%2B"),  # a `+` sent unencoded arrives as a space
    ("2026-13-01", "not a valid date"),
    ("1969-12-01", "between"),
    ("2026-11-01T10:00:00Z", "midnight UTC"),  # granularity=day needs whole days
])
def test_a_bad_from_is_refused_naming_from(text, says):
    error = refused(start=text)
    assert error.field == "from" and says in error.message


def test_a_bad_to_is_refused_naming_to():
    assert refused(end="2026-11-01T10:15:00Z", granularity="hour").field == "to"


def test_hourly_and_total_need_whole_hours_day_needs_midnight():
    assert query(start="2026-11-01T10:00:00Z", end="2026-11-02T07:00:00Z", granularity="hour").start.hour == 10
    total = query(start="2026-11-01T10:00:00Z", end="2026-11-02T00:00:00Z", granularity="total")
    assert not total.daily  # a partial day: usage_hourly answers
    assert query(start="2026-11-01", end="2026-11-03", granularity="total").daily
    assert refused(start="2026-11-01T10:30:00Z", end="2026-11-02", granularity="total").field == "from"


@pytest.mark.parametrize(("start", "end"), [("2026-11-02", "2026-11-01"), ("2026-11-01", "2026-11-01")])
def test_an_inverted_or_empty_range_is_refused(start, end):
    error = refused(start=start, end=end)
    assert error.field == "from" and "must be before to" in error.message


def test_hourly_ranges_are_at_most_31_days_daily_at_most_731():
    assert query(start="2026-10-01", end="2026-11-01", granularity="hour").end == datetime(2026, 11, 1, tzinfo=UTC)
    error = refused(start="2026-10-01", end="2026-11-01T01:00:00Z", granularity="hour")
    assert error.field == "from" and "31 days" in error.message and "granularity=day" in error.message
    assert query(start="2024-11-01", end="2026-11-01").daily  # 730 days
    assert refused(start="2024-10-01", end="2026-11-01").field == "from"
    assert refused(start="2024-10-01", end="2026-11-01", granularity="total").field == "from"


def test_granularity_must_be_known():
    error = refused(granularity="week")
    assert error.field == "granularity" and "'week'" in error.message


def test_group_by_is_a_comma_separated_subset_of_the_dimensions_in_the_order_asked():
    assert query(group_by="").group_by == ()
    assert query(group_by="model, user,feature").group_by == ("model", "user", "feature")
    assert query(group_by="user,user").group_by == ("user",)
    everything = "user,team,wallet,feature,provider,model,event_type"
    assert query(group_by=everything).group_by == tuple(everything.split(","))


@pytest.mark.parametrize("text", ["customer", "user,,model", "user_id", "USER", "user;model"])
def test_unknown_group_by_values_are_refused_naming_group_by(text):
    assert refused(group_by=text).field == "group_by"


@pytest.mark.parametrize("text", ["0", "10001", "-1", "1.5", "ten", "", " 5", "١٠"])
def test_limit_is_a_whole_number_from_1_to_10000(text):
    assert refused(limit=text).field == "limit"


def test_limit_bounds_are_accepted():
    assert query(limit="1").limit == 1 and query(limit="10000").limit == 10000


# --- SQL -------------------------------------------------------------------------------------

SUMS = ("sum(events) AS events, sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens, "
        "sum(cached_input_tokens) AS cached_input_tokens, sum(image_count) AS image_count, sum(quantity) AS quantity, "
        "sum(credits) AS credits, sum(usd_cost) AS usd_cost, sum(revenue_usd) AS revenue_usd, "
        "sum(margin_usd) AS margin_usd")


def test_hourly_rows_sum_the_hourly_rollup_per_bucket_and_group():
    q = query(start="2026-11-01T05:00:00Z", end="2026-11-02T05:00:00Z", granularity="hour", group_by="user,model")
    sql, params = rows_sql(q, "om")
    assert sql == (
        f"SELECT hour AS bucket, user_id, model, {SUMS} FROM om.usage_hourly"
        " WHERE customer_id = {customer_id:String} AND hour >= {start:DateTime('UTC')} AND hour < {end:DateTime('UTC')}"
        " GROUP BY bucket, user_id, model ORDER BY bucket, user_id, model LIMIT {limit:UInt32}"
    )
    assert params == {"customer_id": "cus_a", "start": datetime(2026, 11, 1, 5, tzinfo=UTC),
                      "end": datetime(2026, 11, 2, 5, tzinfo=UTC), "limit": 1001}


def test_daily_rows_bind_dates():
    sql, params = rows_sql(query(start="2026-11-01", end="2026-11-08", group_by="feature", limit="50"), "om")
    assert " FROM om.usage_daily WHERE customer_id = {customer_id:String} AND day >= {start:Date} AND day < {end:Date}" in sql
    assert sql.startswith("SELECT day AS bucket, feature_id, ")
    assert params == {"customer_id": "cus_a", "start": date(2026, 11, 1), "end": date(2026, 11, 8), "limit": 51}


def test_total_without_group_by_has_no_bucket_and_no_group_by():
    sql, _ = rows_sql(query(granularity="total"), "om")
    assert sql == (f"SELECT {SUMS} FROM om.usage_daily WHERE customer_id = {{customer_id:String}}"
                   " AND day >= {start:Date} AND day < {end:Date} LIMIT {limit:UInt32}")
    sql, _ = rows_sql(query(granularity="total", group_by="wallet,event_type"), "om")
    assert "GROUP BY wallet_id, event_type ORDER BY wallet_id, event_type LIMIT" in sql


def test_totals_cover_the_range_without_grouping_or_limit():
    q = query(granularity="hour", group_by="user")
    sql, params = totals_sql(q, "om")
    assert sql == (f"SELECT {SUMS} FROM om.usage_hourly WHERE customer_id = {{customer_id:String}}"
                   " AND hour >= {start:DateTime('UTC')} AND hour < {end:DateTime('UTC')}")
    assert "limit" not in params


def test_the_tenant_is_a_bound_parameter_never_sql_text():
    hostile = "x' OR 1=1 --"
    sql, params = rows_sql(parse(hostile, group_by="user", start=None, end=None, granularity=None, limit=None, now=NOW), "om")
    assert hostile not in sql and params["customer_id"] == hostile


# --- response --------------------------------------------------------------------------------

def metrics(events: int, credits: str, revenue: str, margin: str) -> dict:
    return {"events": events, "input_tokens": 10 * events, "output_tokens": 2 * events, "cached_input_tokens": 0,
            "image_count": 0, "quantity": Decimal("0E-12"), "credits": Decimal(credits), "usd_cost": Decimal("0.5"),
            "revenue_usd": Decimal(revenue), "margin_usd": Decimal(margin)}


def test_rows_render_amounts_as_decimal_strings_and_keys_asked_for_only():
    q = query(granularity="hour", group_by="user,team")
    rows = [{"bucket": datetime(2026, 11, 26, 5), "user_id": "u1", "team_id": "",
             **metrics(3, "1.500000000000", "3.000000000000", "1.000000000000")}]
    body = msgspec.to_builtins(report(q, rows, metrics(3, "1.5", "3", "1")))
    assert body["rows"] == [{
        "events": 3, "input_tokens": 30, "output_tokens": 6, "cached_input_tokens": 0, "image_count": 0,
        "quantity": "0", "credits": "1.5", "usd_cost": "0.5", "revenue_usd": "3", "margin_usd": "1",
        "margin_percent": "33.33", "bucket": "2026-11-26T05:00:00Z", "user_id": "u1", "team_id": None,
    }]
    assert body["totals"]["margin_percent"] == "33.33" and "bucket" not in body["totals"]
    assert {k: body[k] for k in ("customer_id", "from", "to", "granularity", "group_by", "limit", "truncated")} == {
        "customer_id": "cus_a", "from": "2026-10-27T13:00:00Z", "to": "2026-11-26T13:00:00Z", "granularity": "hour",
        "group_by": ["user", "team"], "limit": 1000, "truncated": False,
    }


def test_daily_buckets_are_midnight_utc_and_total_has_none():
    row = {"bucket": date(2026, 11, 3), **metrics(1, "1", "1", "0")}
    assert msgspec.to_builtins(report(query(), [row], row))["rows"][0]["bucket"] == "2026-11-03T00:00:00Z"
    total = msgspec.to_builtins(report(query(granularity="total"), [metrics(1, "1", "1", "0")], metrics(1, "1", "1", "0")))
    assert total["rows"][0]["bucket"] is None


@pytest.mark.parametrize(("revenue", "margin", "percent"), [
    ("0", "-0.5", None),  # no revenue: no percentage, rather than a division by zero
    ("8", "1", "12.5"),
    ("3", "2", "66.67"),
    ("200", "0.01", "0"),  # 0.005 % rounds half to even
    ("200", "0.03", "0.02"),  # 0.015 % rounds half to even
    ("2", "-1", "-50"),
])
def test_margin_percent_is_exact_to_two_places_and_null_without_revenue(revenue, margin, percent):
    totals = msgspec.to_builtins(report(query(), [], metrics(1, "1", revenue, margin)))["totals"]
    assert totals["margin_percent"] == percent


def test_one_row_more_than_the_limit_means_truncated_and_is_dropped():
    q = query(group_by="user", limit="2")
    rows = [{"bucket": date(2026, 11, 1), "user_id": f"u{i}", **metrics(1, "1", "1", "0")} for i in range(3)]
    body = msgspec.to_builtins(report(q, rows, metrics(3, "3", "3", "0")))
    assert body["truncated"] is True
    assert [row["user_id"] for row in body["rows"]] == ["u0", "u1"]
    assert body["totals"]["events"] == 3  # the totals still count every row
    assert msgspec.to_builtins(report(q, rows[:2], metrics(2, "2", "2", "0")))["truncated"] is False
