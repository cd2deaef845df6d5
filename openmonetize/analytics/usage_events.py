"""`usage_events`, one row per rated event (openmonetize/migrations/clickhouse/0002_usage_events.sql):
its columns, in the order every writer gives them, and its insert.

Two processes write it: the ClickHouse sink (sinks/usage_clickhouse.py, from usage.rated: the
records' Avro bodies, whose fields ClickHouse maps to these columns by name) and a replay's
`--rebuild-analytics` (openmonetize/rebilling/analytics.py, re-rated rows at a higher revision,
inserted here). Both name the columns from this list, so they cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence

TABLE = "usage_events"
COLUMNS = (
    "customer_id", "event_id", "user_id", "team_id", "wallet_id", "event_type", "feature_id", "provider", "model",
    "input_tokens", "output_tokens", "cached_input_tokens", "image_count", "image_size", "quality", "unit_type",
    "quantity", "reservation_id", "source", "metadata", "timestamp", "received_at", "rated_at", "credits",
    "usd_cost", "revenue_usd", "margin_usd", "burn_table_id", "burn_table_version", "price_version", "revision",
    "kafka_topic", "kafka_partition", "kafka_offset",
)
# A tenant's rows of a time range, each event once at its highest revision: format with `db`;
# parameters customer_id, from, to.
FINAL_IN_RANGE = ("FROM {db}.usage_events FINAL WHERE customer_id = {{customer_id:String}} "
                  "AND timestamp >= {{from:DateTime64(6, 'UTC')}} AND timestamp < {{to:DateTime64(6, 'UTC')}}")


def insert(client, database: str, rows: Sequence[Sequence]) -> None:
    """Insert rows in COLUMNS order into `database`.usage_events."""
    client.insert(TABLE, rows, column_names=list(COLUMNS), database=database)
