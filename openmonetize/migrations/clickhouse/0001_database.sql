-- The analytics database. `{database}` is the CLICKHOUSE_DATABASE setting.
CREATE DATABASE IF NOT EXISTS {database};
