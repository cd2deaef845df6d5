"""Usage reports against the stack's real ClickHouse.

Rows are inserted straight into `usage_events` (its materialized views fill the rollups during
the INSERT itself, so nothing needs waiting for), each event once, for a fresh tenant. Then:
every SQL block of docs/guides/reporting.md runs with the figures it must give; GET /v1/reports/usage
answers per bucket and group, for the key's tenant only, and refuses bad parameters naming
them; and a duplicated and a re-rated event show what FINAL and the rollups each see.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from openmonetize import clickhouse_client
from openmonetize.catalog.json_codec import decimal_text
from openmonetize.wallet_ids import customer_wallet, team_wallet, user_wallet
from tests.conftest import unique
from tests.integration.support import new_tenant

D = Decimal
UTC = timezone.utc
DOC = Path(__file__).resolve().parents[2] / "docs" / "guides" / "reporting.md"
_BLOCK = re.compile(r"<!-- query: (\w+) -->\n```sql\n(.*?)```", re.S)


def at(day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    return datetime(2026, 10, day, hour, minute, second, micro, tzinfo=UTC)


@dataclass(frozen=True)
class Event:
    at: datetime
    user: str
    team: str
    wallet: str  # "user" or "team": the wallet it was charged to
    feature: str
    provider: str
    model: str
    event_type: str
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    image_count: int
    credits: str
    usd_cost: str
    revenue_usd: str


def token(when, user, team, wallet, feature, provider, model, tokens, cached, credits, cost, revenue) -> Event:
    return Event(when, user, team, wallet, feature, provider, model, "TOKEN_USAGE", *tokens, cached, 0, credits, cost, revenue)


# The tenant's usage; the reports' windows are 2026-10-05 (or 04) to 2026-10-08.
SEED = [
    token(at(3, 23), "carol", "research", "team", "chat", "openai", "gpt-4o", (9, 9), 0, "500", "5", "5"),  # before
    token(at(5, 9, 15), "alice", "research", "user", "chat", "openai", "gpt-4o", (1000, 200), 0, "12.5", "0.045", "0.125"),
    token(at(5, 9, 40), "alice", "research", "user", "chat", "openai", "gpt-4o", (2000, 400), 500, "25", "0.09", "0.25"),
    token(at(5, 10, 5), "bob", "", "user", "summarize", "anthropic", "claude-sonnet-4", (3000, 100), 0, "10", "0.0105", "0.1"),
    Event(at(6, 14), "carol", "research", "team", "images", "openai", "dall-e-3", "IMAGE_GENERATION", 0, 0, 0, 2,
          "80", "0.08", "0.8"),
    token(at(6, 23, 59, 59, 999999), "bob", "", "user", "chat", "openai", "gpt-4o", (500, 50), 0, "5", "0.00175", "0.05"),
    token(at(7), "alice", "research", "user", "summarize", "anthropic", "claude-sonnet-4", (800, 100), 0,
          "7.25", "0.1", "0.0725"),
    token(at(8), "alice", "research", "user", "chat", "openai", "gpt-4o", (7, 7), 0, "1000", "1", "10"),  # at `to`: out
]
COLUMNS = [
    "customer_id", "event_id", "user_id", "team_id", "wallet_id", "event_type", "feature_id", "provider", "model",
    "input_tokens", "output_tokens", "cached_input_tokens", "image_count", "timestamp", "rated_at", "credits",
    "usd_cost", "revenue_usd", "margin_usd", "burn_table_id", "burn_table_version", "price_version", "revision",
]


def wallet_of(customer_id: str, event: Event) -> str:
    return team_wallet(customer_id, event.team) if event.wallet == "team" else user_wallet(customer_id, event.user)


def row(customer_id: str, event_id: str, e: Event, revision: int = 1) -> list:
    return [
        customer_id, event_id, e.user, e.team, wallet_of(customer_id, e), e.event_type, e.feature, e.provider, e.model,
        e.input_tokens, e.output_tokens, e.cached_input_tokens, e.image_count, e.at, e.at + timedelta(seconds=1),
        D(e.credits), D(e.usd_cost), D(e.revenue_usd), D(e.revenue_usd) - D(e.usd_cost), "bt_1", 3, "p-2026-10", revision,
    ]


@pytest.fixture(scope="module")
def ch(settings):
    client = clickhouse_client.get_client(settings, "writer")
    yield client
    client.close()


def insert(ch, settings, rows: list[list]) -> None:
    ch.insert(f"{settings.clickhouse_database}.usage_events", rows, column_names=COLUMNS)


def seed(ch, settings, customer_id: str, events: list[Event]) -> None:
    insert(ch, settings, [row(customer_id, f"evt-{i}", e) for i, e in enumerate(events)])


@pytest.fixture
def seeded(ch, settings, tenant):
    seed(ch, settings, tenant.customer_id, SEED)
    return tenant


# --- docs/guides/reporting.md -------------------------------------------------------------------------

def doc_queries(database: str) -> dict[str, str]:
    """Every ```sql block of the doc by its `<!-- query: name -->` label, on CLICKHOUSE_DATABASE."""
    text = DOC.read_text()
    found = {name: re.sub(r"\bopenmonetize\.", f"{database}.", sql) for name, sql in _BLOCK.findall(text)}
    assert len(found) == text.count("```sql"), "every sql block of the doc needs a distinct <!-- query: name --> label"
    return found


def plain(value):
    """ClickHouse's DateTime('UTC') may come back naive or aware: compare as aware UTC."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def run(ch, sql: str, params: dict) -> list[tuple]:
    if sql.lstrip().startswith(("DELETE", "INSERT")):
        ch.command(sql, parameters=params)
        return []
    return [tuple(plain(v) for v in r) for r in ch.query(sql, parameters=params).result_rows]


@pytest.fixture
def ledger_schema(settings):
    """A Postgres schema of its own with a `ledger_entries` like the real one: the forecast reads
    balances from it, and the shared ledger never sees these made-up entries."""
    schema = unique("reports_ledger")
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"CREATE TABLE {schema}.ledger_entries (LIKE public.ledger_entries INCLUDING DEFAULTS)")
        yield schema, conn
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def add_entries(conn, schema: str, customer_id: str, entries: list[tuple[str, str, str]]) -> None:
    for n, (wallet_id, kind, amount) in enumerate(entries):
        conn.execute(
            f"INSERT INTO {schema}.ledger_entries (entry_id, customer_id, wallet_id, kind, amount, balance_after,"
            " occurred_at, applied_at, kafka_partition, kafka_offset) VALUES (%s, %s, %s, %s, %s, 0, %s, %s, 0, %s)",
            (unique("entry"), customer_id, wallet_id, kind, D(amount), at(1), at(1), n),
        )


def test_every_query_of_the_reporting_doc_gives_its_figures(ch, settings, seeded, ledger_schema):
    c = seeded.customer_id
    alice, bob, research = user_wallet(c, "alice"), user_wallet(c, "bob"), team_wallet(c, "research")
    schema, conn = ledger_schema
    add_entries(conn, schema, c, [
        (alice, "purchase", "100"), (alice, "debit", "-10.5"),  # 89.5
        (bob, "purchase", "10"), (bob, "debit", "-2.5"),  # 7.5
        (research, "purchase", "50"), (research, "debit", "-80"),  # -30: overdrawn
        (customer_wallet(c), "grant", "50"),  # no burn
    ])
    other = new_tenant(settings).customer_id
    add_entries(conn, schema, other, [(user_wallet(other, "alice"), "purchase", "5")])
    seed(ch, settings, other, SEED)  # the same usage for another tenant: never in these figures

    pg = conninfo_to_dict(settings.database_url)
    days = {"customer_id": c, "from": date(2026, 10, 5), "to": date(2026, 10, 8)}
    instants = {"customer_id": c, "from": at(5), "to": at(8)}
    forecast = {"customer_id": c, "days": 4, "as_of": date(2026, 10, 8)}
    cases = {
        "usage_by_user_feature_model": (days, [
            ("alice", "chat", "gpt-4o", 2, 3000, 600, 500, 0, D("37.5"), D("0.135"), D("0.375"), D("0.24")),
            ("alice", "summarize", "claude-sonnet-4", 1, 800, 100, 0, 0, D("7.25"), D("0.1"), D("0.0725"), D("-0.0275")),
            ("bob", "chat", "gpt-4o", 1, 500, 50, 0, 0, D("5"), D("0.00175"), D("0.05"), D("0.04825")),
            ("bob", "summarize", "claude-sonnet-4", 1, 3000, 100, 0, 0, D("10"), D("0.0105"), D("0.1"), D("0.0895")),
            ("carol", "images", "dall-e-3", 1, 0, 0, 0, 2, D("80"), D("0.08"), D("0.8"), D("0.72")),
        ]),
        "hourly_usage_of_a_user": ({**instants, "user_id": "alice"}, [
            (at(5, 9), "chat", "gpt-4o", 2, 3000, 600, D("37.5"), D("0.135")),
            (at(7, 0), "summarize", "claude-sonnet-4", 1, 800, 100, D("7.25"), D("0.1")),
        ]),
        "top_spenders": ({**days, "top": 2}, [("carol", D("80"), D("0.08"), 1), ("alice", D("44.75"), D("0.235"), 3)]),
        "margin_by_model": (days, [
            ("openai", "dall-e-3", 1, D("0.8"), D("0.08"), D("0.72"), D("90")),
            ("openai", "gpt-4o", 3, D("0.425"), D("0.13675"), D("0.28825"), D("67.82")),  # 67.8235...
            ("anthropic", "claude-sonnet-4", 2, D("0.1725"), D("0.1105"), D("0.062"), D("35.94")),  # 35.9420...
        ]),
        "daily_burn": ({**days, "from": date(2026, 10, 4)}, [
            (date(2026, 10, 4), 0, D("0"), D("0")),  # filled: no usage that day
            (date(2026, 10, 5), 3, D("47.5"), D("0.1455")),
            (date(2026, 10, 6), 2, D("85"), D("0.08175")),
            (date(2026, 10, 7), 1, D("7.25"), D("0.1")),
        ]),
        "burn_rate_per_wallet": (forecast, [  # 4 days before 2026-10-08: 10-04 to 10-07
            (research, D("80"), D("20")), (alice, D("44.75"), D("11.1875")), (bob, D("15"), D("3.75")),
        ]),
        "forecast_from_ledger": ({
            **forecast, "pg_host_port": f"{pg['host']}:{pg['port']}", "pg_database": pg["dbname"],
            "pg_user": pg["user"], "pg_password": pg["password"], "pg_schema": schema,
        }, [
            (research, D("-30"), D("20"), D("0"), date(2026, 10, 8)),  # overdrawn: out already
            (bob, D("7.5"), D("3.75"), D("2"), date(2026, 10, 10)),
            (alice, D("89.5"), D("11.1875"), D("8"), date(2026, 10, 16)),
            (customer_wallet(c), D("50"), D("0"), None, None),  # burns nothing
        ]),
        "forecast_from_balance": ({**forecast, "wallet_id": alice, "available": D("89.5")}, [
            (D("11.1875"), D("8"), date(2026, 10, 16)),
        ]),
        "events_of_a_user": ({**instants, "user_id": "bob"}, [
            ("evt-3", at(5, 10, 5), "summarize", "claude-sonnet-4", 3000, 100, D("10"), D("0.0105"), D("0.0895"), 3,
             "p-2026-10", 1),
            ("evt-5", at(6, 23, 59, 59, 999999), "chat", "gpt-4o", 500, 50, D("5"), D("0.00175"), D("0.04825"), 3,
             "p-2026-10", 1),
        ]),
        "exact_totals": (instants, [(6, D("139.75"), D("0.32725"), D("1.07025"))]),
        # Rebuilding what was inserted once changes nothing (checked below).
        "rebuild_delete_hourly": (instants, []),
        "rebuild_insert_hourly": (instants, []),
        "rebuild_delete_daily": (instants, []),
        "rebuild_insert_daily": (instants, []),
    }
    queries = doc_queries(settings.clickhouse_database)
    assert list(queries) == list(cases), "a query of the doc without expected figures here, or the other way round"
    for name, sql in queries.items():
        params, expected = cases[name]
        assert run(ch, sql, params) == expected, name
    for name in ("usage_by_user_feature_model", "daily_burn", "hourly_usage_of_a_user"):
        assert run(ch, queries[name], cases[name][0]) == cases[name][1], f"{name} after the rebuild"


def test_final_collapses_copies_the_rollups_count_them_until_rebuilt(ch, settings, tenant):
    """The same event inserted twice, then re-rated (revision 2): FINAL shows one event with the
    new rating; the rollups, fed by every INSERT, hold all three until the doc's rebuild."""
    c, db = tenant.customer_id, settings.clickhouse_database
    event = SEED[1]  # alice, 2026-10-05 09:15, 12.5 credits
    insert(ch, settings, [row(c, "evt-dup", event)])
    insert(ch, settings, [row(c, "evt-dup", event)])  # a re-delivered copy the sink would have dropped
    rerated = replace(event, credits="15", revenue_usd="0.15")
    insert(ch, settings, [row(c, "evt-dup", rerated, revision=2)])
    queries = doc_queries(db)
    window = {"customer_id": c, "from": at(5), "to": at(6)}

    def rollup() -> tuple:
        sql = f"SELECT sum(events), sum(credits) FROM {db}.usage_hourly WHERE customer_id = {{c:String}}"
        daily = f"SELECT sum(events), sum(credits) FROM {db}.usage_daily WHERE customer_id = {{c:String}}"
        return ch.query(sql, parameters={"c": c}).result_rows[0] + ch.query(daily, parameters={"c": c}).result_rows[0]

    assert run(ch, queries["exact_totals"], window) == [(1, D("15"), D("0.045"), D("0.105"))]
    final_rows = run(ch, queries["events_of_a_user"], {**window, "user_id": "alice"})
    assert [(r[0], r[6], r[-1]) for r in final_rows] == [("evt-dup", D("15"), 2)]
    assert rollup() == (3, D("40"), 3, D("40"))  # 12.5 + 12.5 + 15: what a replay leaves behind

    for name in ("rebuild_delete_hourly", "rebuild_insert_hourly", "rebuild_delete_daily", "rebuild_insert_daily"):
        run(ch, queries[name], window)
    assert rollup() == (1, D("15"), 1, D("15"))
    report = get(settings, tenant.api_key, {"from": "2026-10-05", "to": "2026-10-06", "granularity": "total"})
    assert (report["totals"]["events"], report["totals"]["credits"]) == (1, "15")


# --- GET /v1/reports/usage ---------------------------------------------------------------------

def get(settings, api_key: str | None, params: dict) -> dict:
    response = call(settings, api_key, params)
    assert response.status_code == 200, response.text
    return response.json()


def call(settings, api_key: str | None, params: dict) -> httpx.Response:
    headers = {"X-OM-Api-Key": api_key} if api_key else {}
    return httpx.get(f"{settings.api_url}/v1/reports/usage", params=params, headers=headers, timeout=10)


KEYS = {"user": "user", "team": "team", "feature": "feature", "provider": "provider", "model": "model",
        "event_type": "event_type"}
FIELD = {"user": "user_id", "team": "team_id", "wallet": "wallet_id", "feature": "feature_id", "provider": "provider",
         "model": "model", "event_type": "event_type"}


def expected(customer_id: str, group_by: list[str], granularity: str, start: datetime, end: datetime) -> list[dict]:
    """The rows the route must answer, aggregated here from SEED: keys, events and money."""
    sums: dict[tuple, list] = defaultdict(lambda: [0, D(0), D(0), D(0)])
    for e in SEED:
        if not start <= e.at < end:
            continue
        bucket = None
        if granularity == "hour":
            bucket = e.at.replace(minute=0, second=0, microsecond=0)
        elif granularity == "day":
            bucket = e.at.replace(hour=0, minute=0, second=0, microsecond=0)
        keys = tuple(wallet_of(customer_id, e) if d == "wallet" else getattr(e, KEYS[d]) for d in group_by)
        total = sums[(bucket, *keys)]
        total[0] += 1
        total[1] += D(e.credits)
        total[2] += D(e.usd_cost)
        total[3] += D(e.revenue_usd)
    rows = []
    for (bucket, *keys), (events, credits, cost, revenue) in sorted(sums.items(), key=lambda kv: (kv[0][0] or at(1),
                                                                                                   *kv[0][1:])):
        rows.append({
            "bucket": bucket.strftime("%Y-%m-%dT%H:%M:%SZ") if bucket else None,
            **{FIELD[d]: key or None for d, key in zip(group_by, keys)},
            "events": events, "credits": decimal_text(credits), "usd_cost": decimal_text(cost),
            "revenue_usd": decimal_text(revenue), "margin_usd": decimal_text(revenue - cost),
        })
    return rows


def projected(rows: list[dict], group_by: list[str]) -> list[dict]:
    wanted = ["bucket", *(FIELD[d] for d in group_by), "events", "credits", "usd_cost", "revenue_usd", "margin_usd"]
    for r in rows:
        assert set(r) - set(wanted) == {
            "input_tokens", "output_tokens", "cached_input_tokens", "image_count", "quantity", "margin_percent",
        }, "a row has exactly its bucket, the keys asked for and the measures"
    return [{k: r[k] for k in wanted} for r in rows]


def test_daily_rows_by_user_feature_model_with_every_figure(settings, seeded):
    body = get(settings, seeded.api_key, {"group_by": "user,feature,model", "from": "2026-10-05", "to": "2026-10-08"})
    assert {k: body[k] for k in ("customer_id", "from", "to", "granularity", "group_by", "limit", "truncated")} == {
        "customer_id": seeded.customer_id, "from": "2026-10-05T00:00:00Z", "to": "2026-10-08T00:00:00Z",
        "granularity": "day", "group_by": ["user", "feature", "model"], "limit": 1000, "truncated": False,
    }

    def r(day, user, feature, model, events, tokens, cached, images, credits, cost, revenue, margin, percent):
        return {"bucket": f"2026-10-0{day}T00:00:00Z", "user_id": user, "feature_id": feature, "model": model,
                "events": events, "input_tokens": tokens[0], "output_tokens": tokens[1], "cached_input_tokens": cached,
                "image_count": images, "quantity": "0", "credits": credits, "usd_cost": cost, "revenue_usd": revenue,
                "margin_usd": margin, "margin_percent": percent}

    assert body["rows"] == [
        r(5, "alice", "chat", "gpt-4o", 2, (3000, 600), 500, 0, "37.5", "0.135", "0.375", "0.24", "64"),
        r(5, "bob", "summarize", "claude-sonnet-4", 1, (3000, 100), 0, 0, "10", "0.0105", "0.1", "0.0895", "89.5"),
        r(6, "bob", "chat", "gpt-4o", 1, (500, 50), 0, 0, "5", "0.00175", "0.05", "0.04825", "96.5"),
        r(6, "carol", "images", "dall-e-3", 1, (0, 0), 0, 2, "80", "0.08", "0.8", "0.72", "90"),
        r(7, "alice", "summarize", "claude-sonnet-4", 1, (800, 100), 0, 0, "7.25", "0.1", "0.0725", "-0.0275", "-37.93"),
    ]
    assert body["totals"] == {
        "events": 6, "input_tokens": 7300, "output_tokens": 850, "cached_input_tokens": 500, "image_count": 2,
        "quantity": "0", "credits": "139.75", "usd_cost": "0.32725", "revenue_usd": "1.3975", "margin_usd": "1.07025",
        "margin_percent": "76.58",  # 76.5831...
    }


def test_hourly_buckets_and_the_exclusive_end(settings, seeded):
    body = get(settings, seeded.api_key, {
        "group_by": "user", "granularity": "hour", "from": "2026-10-05T09:00:00Z", "to": "2026-10-07T00:00:00Z",
    })
    assert [(r["bucket"], r["user_id"], r["events"], r["credits"]) for r in body["rows"]] == [
        ("2026-10-05T09:00:00Z", "alice", 2, "37.5"),
        ("2026-10-05T10:00:00Z", "bob", 1, "10"),
        ("2026-10-06T14:00:00Z", "carol", 1, "80"),
        ("2026-10-06T23:00:00Z", "bob", 1, "5"),  # 23:59:59.999999 is still the 6th; midnight on the 7th is not
    ]
    offset = get(settings, seeded.api_key, {  # the same instants written with an offset
        "group_by": "user", "granularity": "hour", "from": "2026-10-05T11:00:00+02:00", "to": "2026-10-07T02:00:00+02:00",
    })
    assert offset["rows"] == body["rows"] and offset["from"] == "2026-10-05T09:00:00Z"


def test_daily_without_group_by_is_one_row_per_day_with_usage(settings, seeded):
    body = get(settings, seeded.api_key, {"from": "2026-10-04", "to": "2026-10-08"})
    assert [(r["bucket"], r["events"], r["credits"]) for r in body["rows"]] == [
        ("2026-10-05T00:00:00Z", 3, "47.5"), ("2026-10-06T00:00:00Z", 2, "85"), ("2026-10-07T00:00:00Z", 1, "7.25"),
    ]
    assert set(body["rows"][0]) == {
        "bucket", "events", "input_tokens", "output_tokens", "cached_input_tokens", "image_count", "quantity",
        "credits", "usd_cost", "revenue_usd", "margin_usd", "margin_percent",
    }


@pytest.mark.parametrize(("group_by", "granularity", "start", "end"), [
    (["model"], "total", at(5), at(8)),  # read from usage_daily
    (["user", "model"], "total", at(5, 10), at(6, 15)),  # partial days: read from usage_hourly
    (["team", "wallet"], "total", at(5), at(8)),  # bob has no team: null
    (["event_type", "provider"], "day", at(3), at(9)),
    (["feature"], "hour", at(5), at(8)),
    (["model", "user"], "day", at(5), at(8)),  # keys in the order asked, rows in that order too
    ([], "total", at(5), at(8)),
    (["user", "team", "wallet", "feature", "provider", "model", "event_type"], "hour", at(3), at(9)),
])
def test_group_by_combinations_match_the_events(settings, seeded, group_by, granularity, start, end):
    body = get(settings, seeded.api_key, {
        "group_by": ",".join(group_by), "granularity": granularity,
        "from": start.isoformat(), "to": end.isoformat(),
    })
    rows = expected(seeded.customer_id, group_by, granularity, start, end)
    assert projected(body["rows"], group_by) == rows
    assert body["totals"]["events"] == sum(r["events"] for r in rows)
    assert D(body["totals"]["credits"]) == sum(D(r["credits"]) for r in rows)


def test_total_with_no_usage_has_no_rows_and_zero_totals(settings, tenant):
    body = get(settings, tenant.api_key, {"granularity": "total"})
    assert body["rows"] == [] and body["truncated"] is False
    assert (body["totals"]["events"], body["totals"]["credits"], body["totals"]["margin_percent"]) == (0, "0", None)


def test_limit_truncates_the_rows_not_the_totals(settings, seeded):
    params = {"group_by": "user,feature,model", "from": "2026-10-05", "to": "2026-10-08"}
    body = get(settings, seeded.api_key, {**params, "limit": "2"})
    assert body["truncated"] is True and body["limit"] == 2
    assert [(r["bucket"], r["user_id"]) for r in body["rows"]] == [("2026-10-05T00:00:00Z", "alice"),
                                                                    ("2026-10-05T00:00:00Z", "bob")]
    assert (body["totals"]["events"], body["totals"]["credits"]) == (6, "139.75")
    assert get(settings, seeded.api_key, {**params, "limit": "5"})["truncated"] is False


def test_a_key_sees_its_own_tenant_only(ch, settings, seeded):
    other = new_tenant(settings)
    seed(ch, settings, other.customer_id, [
        token(at(5, 9), "mallory", "", "user", "chat", "openai", "gpt-4o", (1, 1), 0, "999", "1", "9.99"),
    ])
    params = {"group_by": "user,wallet", "granularity": "total", "from": "2026-10-01", "to": "2026-10-10"}
    mine = get(settings, seeded.api_key, params)
    theirs = get(settings, other.api_key, params)
    assert {r["user_id"] for r in mine["rows"]} == {"alice", "bob", "carol"}
    assert all(r["wallet_id"].startswith(f"w:{seeded.customer_id}:") for r in mine["rows"])
    assert mine["totals"]["credits"] == "1639.75"  # every SEED event, the 500 and the 1000 ones included
    assert [(r["user_id"], r["credits"]) for r in theirs["rows"]] == [("mallory", "999")]
    assert theirs["customer_id"] == other.customer_id and theirs["totals"]["events"] == 1
    # A customer_id parameter is not a way in: the key decides.
    assert get(settings, other.api_key, {**params, "customer_id": seeded.customer_id})["rows"] == theirs["rows"]


@pytest.mark.parametrize(("params", "field"), [
    ({"group_by": "user,customer"}, "group_by"),
    ({"group_by": "user,,model"}, "group_by"),
    ({"from": "last tuesday"}, "from"),
    ({"from": "2026-10-05T00:00:00"}, "from"),  # no timezone: refused, not guessed
    ({"to": "2026-10-05T10:30:00Z", "granularity": "hour"}, "to"),  # not on a bucket boundary
    ({"from": "2026-10-08", "to": "2026-10-05"}, "from"),
    ({"from": "2026-09-01T00:00:00Z", "to": "2026-10-05T00:00:00Z", "granularity": "hour"}, "from"),  # 34 days
    ({"from": "2023-01-01", "to": "2026-10-05"}, "from"),
    ({"granularity": "minute"}, "granularity"),
    ({"limit": "10001"}, "limit"),
    ({"limit": "-5"}, "limit"),
])
def test_bad_parameters_are_422_naming_the_parameter(settings, tenant, params, field):
    response = call(settings, tenant.api_key, params)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_report_query"
    assert response.json()["error"]["field"] == field


@pytest.mark.parametrize("key", [None, "om_not_a_key"])
def test_without_a_valid_key_it_is_401(settings, key):
    response = call(settings, key, {"group_by": "user"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] in ("missing_api_key", "invalid_api_key")
