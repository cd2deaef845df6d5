"""Rough throughput of the ClickHouse HTTP stand-in with usage-event-shaped rows.

    python -m deploy.clickhouse_http.bench   # CLICKHOUSE_URL, or --url http://127.0.0.1:18123

Inserts --rows rows through clickhouse-connect in batches, then times a GROUP BY tenant, user.
The insert rate includes clickhouse-connect's own Native encoding of Python rows, which is
usually the larger part of the cost.
"""

from __future__ import annotations

import argparse
import random
import time
import uuid
from datetime import datetime, timedelta
from decimal import Decimal

from openmonetize import clickhouse_client
from openmonetize.settings import get_settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m deploy.clickhouse_http.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="", help="default: CLICKHOUSE_URL, as the writer (openmonetize/clickhouse_client.py)")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=100_000)
    parser.add_argument("--compress", default="lz4", help="lz4, zstd, gzip or none")
    args = parser.parse_args(argv)

    settings = get_settings()
    if args.url:
        settings = settings.model_copy(update={"clickhouse_url": args.url})
    client = clickhouse_client.get_client(settings, "writer", compress=False if args.compress == "none" else args.compress)
    database = f"bench_{uuid.uuid4().hex[:8]}"
    client.command(f"CREATE DATABASE {database}")
    table = f"{database}.usage_events"
    client.command(
        f"CREATE TABLE {table} (tenant LowCardinality(String), user String, model LowCardinality(String), "
        "tokens UInt32, credits Decimal(38, 12), ts DateTime64(6)) ENGINE = MergeTree ORDER BY (tenant, user, ts)"
    )
    rng = random.Random(42)
    models = ["gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet", "llama-3-70b"]
    start_ts = datetime(2026, 1, 1)
    batches = []
    for offset in range(0, args.rows, args.batch):
        batches.append([
            (f"tenant-{rng.randrange(50)}", f"user-{rng.randrange(5000)}", rng.choice(models), rng.randrange(1, 8000),
             Decimal(rng.randrange(1, 10**9)) / Decimal(10**9), start_ts + timedelta(microseconds=(offset + i) * 997))
            for i in range(min(args.batch, args.rows - offset))
        ])

    started = time.perf_counter()
    for batch in batches:
        client.insert(table, batch)
    elapsed = time.perf_counter() - started
    print(f"insert: {args.rows:,} rows in {elapsed:.2f} s = {args.rows / elapsed:,.0f} rows/s "
          f"(batches of {args.batch:,}, compress={args.compress})")

    query = f"SELECT tenant, user, count(), sum(tokens), sum(credits) FROM {table} GROUP BY tenant, user"
    for attempt in ("cold", "warm"):
        started = time.perf_counter()
        groups = len(client.query(query).result_rows)
        elapsed_ms = (time.perf_counter() - started) * 1000
        print(f"group by tenant, user ({attempt}): {groups:,} groups in {elapsed_ms:.0f} ms")
    client.command(f"DROP DATABASE {database}")


if __name__ == "__main__":
    main()
