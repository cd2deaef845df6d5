"""How long the documented reports take over 10,000,000 rows: `report_query_ms`.

    python -m deploy.bench.reports --rows 10000000 --runs 3

On the running stack's ClickHouse, in a database of its own (migrated, dropped afterwards):
`--rows` rated events are generated inside ClickHouse (INSERT … SELECT from numbers(), so the
materialized views fill the hourly and daily rollups as the sink's inserts would), spread over
30 days, 50 tenants and one big tenant holding half the rows (`cus_big`, 5,000 users, each
using mostly one of 5 features and one of 6 models, as real users do). Then every read query of docs/guides/reporting.md runs for the big tenant over the
30 days: once to warm up, then --runs times; each query's median is reported with its spread.
`report_query_ms` is the slowest query's median: what a user waits for at most.
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
import uuid
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlparse

from deploy.bench.results import RESULTS, merge_results
from openmonetize import clickhouse_client, migrations
from openmonetize.settings import get_settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "guides" / "reporting.md"
_BLOCK = re.compile(r"<!-- query: (\w+) -->\n```sql\n(.*?)```", re.S)
WRITES = ("rebuild_",)  # the doc's rollup rebuild statements: not reports

FILL = """
INSERT INTO {db}.usage_events
    (customer_id, event_id, user_id, team_id, wallet_id, event_type, feature_id, provider, model,
     input_tokens, output_tokens, cached_input_tokens, timestamp, received_at, rated_at, credits, usd_cost,
     revenue_usd, margin_usd, burn_table_id, burn_table_version, price_version, revision, kafka_topic,
     kafka_partition, kafka_offset)
WITH (intHash32(number) % 5000 + (number % 7 = 0)) % 6 AS model_index
SELECT
    if(number % 2 = 0, 'cus_big', concat('cus_', toString(number % 50))) AS customer_id,
    concat('evt_', toString(number)) AS event_id,
    concat('user-', toString(intHash32(number) % 5000)) AS user_id,
    if(intHash32(number) % 5000 % 3 = 0, concat('team-', toString(intHash32(number) % 7)), '') AS team_id,
    concat('w:', customer_id, ':user:', user_id) AS wallet_id,
    'TOKEN_USAGE' AS event_type,
    ['chat', 'search', 'summarize', 'agent', 'embed'][(intHash32(number) % 5000 + (number % 10 = 0)) % 5 + 1]
        AS feature_id,
    ['openai', 'openai', 'openai', 'anthropic', 'anthropic', 'google'][model_index + 1] AS provider,
    ['gpt-4o', 'gpt-4o-mini', 'o3', 'claude-sonnet-4', 'claude-3-5-haiku', 'gemini-2.5-pro'][model_index + 1] AS model,
    500 + intHash32(number) % 4000 AS input_tokens,
    50 + intHash32(number + 1) % 800 AS output_tokens,
    intHash32(number + 2) % 200 AS cached_input_tokens,
    now64(6) - toIntervalSecond(number % 2592000) AS timestamp,
    timestamp AS received_at,
    timestamp AS rated_at,
    toDecimal128((input_tokens * 25 + output_tokens * 100) / 10000, 12) AS credits,
    toDecimal128((input_tokens * 25 + output_tokens * 100) / 10000000, 12) AS usd_cost,
    credits / 100 AS revenue_usd,
    revenue_usd - usd_cost AS margin_usd,
    'bt_bench' AS burn_table_id, 1 AS burn_table_version, 'bench' AS price_version, 0 AS revision,
    'bench' AS kafka_topic, number % 6 AS kafka_partition, number AS kafka_offset
FROM numbers({rows})
"""


def doc_queries(database: str) -> dict[str, str]:
    """The read queries of docs/guides/reporting.md by name, on `database`."""
    return {name: re.sub(r"\bopenmonetize\.", f"{database}.", sql) for name, sql in _BLOCK.findall(DOC.read_text())
            if not name.startswith(WRITES)}


def parameters(settings) -> dict:
    today = date.today()
    pg = urlparse(settings.database_url)
    return {
        "customer_id": "cus_big", "user_id": "user-1", "wallet_id": "w:cus_big:user:user-1",
        "from": today - timedelta(days=30), "to": today + timedelta(days=1), "top": 10, "days": 7, "as_of": today,
        "available": 1000, "pg_host_port": f"{pg.hostname}:{pg.port or 5432}", "pg_database": pg.path.lstrip("/"),
        "pg_user": pg.username or "", "pg_password": pg.password or "", "pg_schema": "public",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-save", action="store_true", help="do not write bench-results.json")
    args = parser.parse_args()
    settings = get_settings()
    database = f"bench_reports_{uuid.uuid4().hex[:8]}"
    client = clickhouse_client.get_client(settings, "writer", send_receive_timeout=600)
    try:
        migrations.apply_clickhouse(client, database)
        start = time.perf_counter()
        client.command(FILL.format(db=database, rows=args.rows))
        fill_s = time.perf_counter() - start
        print(f"{args.rows:,} rows (and their rollups) generated in {fill_s:.1f} s "
              f"({args.rows / fill_s:,.0f} rows/s)", flush=True)
        params = parameters(settings)
        medians: dict[str, float] = {}
        print("| query | median ms (min-max) | rows |")
        print("| --- | --- | --- |")
        for name, sql in doc_queries(database).items():
            used = {k: v for k, v in params.items() if f"{{{k}:" in sql}
            rows = len(client.query(sql, parameters=used).result_rows)  # warm-up
            timings = []
            for _ in range(args.runs):
                t = time.perf_counter()
                client.query(sql, parameters=used)
                timings.append((time.perf_counter() - t) * 1000)
            medians[name] = statistics.median(timings)
            print(f"| {name} | {medians[name]:,.1f} ({min(timings):,.1f}-{max(timings):,.1f}) | {rows:,} |", flush=True)
        slowest = max(medians, key=medians.get)
        print(f"\nreport_query_ms (the slowest report's median): {medians[slowest]:,.1f} ms ({slowest}), over "
              f"{args.rows:,} rows, the big tenant holding {args.rows // 2:,}")
        if not args.no_save:
            merge_results({"report_query_ms": round(medians[slowest], 1),
                           "report_query_detail_ms": {k: round(v, 1) for k, v in medians.items()},
                           "report_rows": args.rows})
            print(f"saved to {RESULTS}")
    finally:
        client.command(f"DROP DATABASE IF EXISTS {database}")
        client.close()


if __name__ == "__main__":
    main()
