"""The rollups' one definition is the migration's materialized views: the rebuild a replay runs is
their SELECT over `usage_events FINAL`, and docs/guides/reporting.md shows exactly those statements (the
integration tests run them on ClickHouse)."""

from __future__ import annotations

import re
from pathlib import Path

from openmonetize.analytics.rollups import REBUILD_STATEMENTS, views

DOC = Path(__file__).parents[4] / "docs" / "guides" / "reporting.md"
_BLOCK = re.compile(r"<!-- query: (rebuild_\w+) -->\n```sql\n(.*?)```", re.S)


def normalized(sql: str) -> str:
    return " ".join(sql.split())


def test_the_rebuild_statements_are_the_documented_ones_in_the_documented_order():
    documented = [normalized(sql) for _name, sql in _BLOCK.findall(DOC.read_text())]
    assert [normalized(s.format(db="openmonetize")) for s in REBUILD_STATEMENTS] == documented


def test_each_rollup_is_rebuilt_with_its_materialized_views_select():
    defined = views()
    assert set(defined) == {"usage_hourly", "usage_daily"}
    for table, (select, group_by) in defined.items():
        inserts = [s for s in REBUILD_STATEMENTS if s.startswith(f"INSERT INTO {{db}}.{table} ")]
        assert len(inserts) == 1
        assert f"SELECT {select} FROM {{db}}.usage_events FINAL " in inserts[0]
        assert inserts[0].endswith(f"GROUP BY {group_by}")
    assert "sum(credits) AS credits" in defined["usage_daily"][0]
