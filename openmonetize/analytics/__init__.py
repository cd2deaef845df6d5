"""The ClickHouse analytics tables as every writer and reader sees them: the columns of
`usage_events` and its insert (usage_events.py), the hourly and daily rollups (rollups.py)."""
