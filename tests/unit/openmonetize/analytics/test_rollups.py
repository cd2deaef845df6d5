"""The rollup rebuild a replay runs is the one docs/reporting.md documents (and tests on ClickHouse)."""

from __future__ import annotations

import re
from pathlib import Path

from openmonetize.rebilling.analytics import REBUILD_STATEMENTS

DOC = Path(__file__).parents[4] / "docs" / "reporting.md"
_BLOCK = re.compile(r"<!-- query: (rebuild_\w+) -->\n```sql\n(.*?)```", re.S)


def normalized(sql: str) -> str:
    return " ".join(sql.split())


def test_the_rebuild_statements_are_the_documented_ones_in_the_documented_order():
    documented = [normalized(sql) for _name, sql in _BLOCK.findall(DOC.read_text())]
    assert [normalized(s.format(db="openmonetize")) for s in REBUILD_STATEMENTS] == documented
