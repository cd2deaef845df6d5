-- One row per rated event, written by the ClickHouse sink (sinks/usage_clickhouse.py) from usage.rated.
--
-- ReplacingMergeTree(revision): the sorting key ends with event_id, and every other key column is
-- a field of the event itself, so a re-delivered copy of an event has the same key and collapses
-- into one row (`FINAL` gives exact figures before the background merge happens). A replay that
-- re-rates an event writes it again with a higher `revision`, which wins.
-- Sorted by tenant and day, then user: a time range prunes by day, and one user's events of a
-- day are contiguous (an hour-first key spread them over every granule of the tenant's day).
-- Empty string, not NULL, for absent text fields: they are grouping keys in the reports.
CREATE TABLE IF NOT EXISTS {database}.usage_events (
    customer_id         LowCardinality(String),
    event_id            String,
    user_id             String,
    team_id             String,
    wallet_id           String,
    event_type          LowCardinality(String),
    feature_id          LowCardinality(String),
    provider            LowCardinality(String),
    model               LowCardinality(String),
    input_tokens        UInt64,
    output_tokens       UInt64,
    cached_input_tokens UInt64,
    image_count         UInt32,
    image_size          LowCardinality(String),
    quality             LowCardinality(String),
    unit_type           LowCardinality(String),
    quantity            Decimal(38, 12),
    reservation_id      String,
    source              LowCardinality(String),
    metadata            Map(String, String),
    timestamp           DateTime64(6, 'UTC'),
    received_at         Nullable(DateTime64(6, 'UTC')),
    rated_at            DateTime64(6, 'UTC'),
    credits             Decimal(38, 12),
    usd_cost            Decimal(38, 12),
    revenue_usd         Decimal(38, 12),
    margin_usd          Decimal(38, 12),
    burn_table_id       String,
    burn_table_version  UInt32,
    price_version       LowCardinality(String),
    revision            UInt64,
    kafka_topic         LowCardinality(String),
    kafka_partition     UInt32,
    kafka_offset        UInt64,
    inserted_at         DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(revision)
PARTITION BY toYYYYMM(timestamp)
ORDER BY (customer_id, toDate(timestamp), user_id, feature_id, model, event_id);

-- Rollups for the reports and the dashboard: per tenant × wallet × user × team × feature ×
-- provider × model × event type, by hour and by day. SummingMergeTree adds rows with the same key
-- as parts merge; queries still sum() with GROUP BY. A materialized view only sees inserts, so the
-- sink inserts each event once (it drops re-delivered copies, see the sink's docstring) and a
-- replay that re-rates events rebuilds the rollups of the hours it touched.
CREATE TABLE IF NOT EXISTS {database}.usage_hourly (
    customer_id         LowCardinality(String),
    hour                DateTime('UTC'),
    wallet_id           String,
    user_id             String,
    team_id             String,
    feature_id          LowCardinality(String),
    provider            LowCardinality(String),
    model               LowCardinality(String),
    event_type          LowCardinality(String),
    events              UInt64,
    input_tokens        UInt64,
    output_tokens       UInt64,
    cached_input_tokens UInt64,
    image_count         UInt64,
    quantity            Decimal(38, 12),
    credits             Decimal(38, 12),
    usd_cost            Decimal(38, 12),
    revenue_usd         Decimal(38, 12),
    margin_usd          Decimal(38, 12)
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (customer_id, hour, user_id, feature_id, model, provider, team_id, wallet_id, event_type);

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.usage_hourly_mv TO {database}.usage_hourly AS
SELECT
    customer_id, toStartOfHour(timestamp) AS hour, wallet_id, user_id, team_id, feature_id, provider, model,
    event_type, count() AS events, sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
    sum(cached_input_tokens) AS cached_input_tokens, sum(toUInt64(image_count)) AS image_count,
    sum(quantity) AS quantity, sum(credits) AS credits, sum(usd_cost) AS usd_cost, sum(revenue_usd) AS revenue_usd,
    sum(margin_usd) AS margin_usd
FROM {database}.usage_events
GROUP BY customer_id, hour, wallet_id, user_id, team_id, feature_id, provider, model, event_type;

CREATE TABLE IF NOT EXISTS {database}.usage_daily (
    customer_id         LowCardinality(String),
    day                 Date,
    wallet_id           String,
    user_id             String,
    team_id             String,
    feature_id          LowCardinality(String),
    provider            LowCardinality(String),
    model               LowCardinality(String),
    event_type          LowCardinality(String),
    events              UInt64,
    input_tokens        UInt64,
    output_tokens       UInt64,
    cached_input_tokens UInt64,
    image_count         UInt64,
    quantity            Decimal(38, 12),
    credits             Decimal(38, 12),
    usd_cost            Decimal(38, 12),
    revenue_usd         Decimal(38, 12),
    margin_usd          Decimal(38, 12)
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (customer_id, day, user_id, feature_id, model, provider, team_id, wallet_id, event_type);

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.usage_daily_mv TO {database}.usage_daily AS
SELECT
    customer_id, toDate(timestamp) AS day, wallet_id, user_id, team_id, feature_id, provider, model,
    event_type, count() AS events, sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
    sum(cached_input_tokens) AS cached_input_tokens, sum(toUInt64(image_count)) AS image_count,
    sum(quantity) AS quantity, sum(credits) AS credits, sum(usd_cost) AS usd_cost, sum(revenue_usd) AS revenue_usd,
    sum(margin_usd) AS margin_usd
FROM {database}.usage_events
GROUP BY customer_id, day, wallet_id, user_id, team_id, feature_id, provider, model, event_type;
