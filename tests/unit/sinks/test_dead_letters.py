"""`isolate`: the rows a store refuses for their content are found and set apart, every other
row is written, and an outage is not mistaken for refused rows."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sinks.dead_letters import isolate


class Refused(Exception):
    pass


class Down(Exception):
    pass


class Store:
    """Takes a batch whole or not at all, like one transaction; refuses any batch with a bad row."""

    def __init__(self, bad: set[int]):
        self.bad, self.stored, self.writes = bad, [], 0

    def write(self, rows: list[int]) -> int:
        self.writes += 1
        if any(row in self.bad for row in rows):
            raise Refused(f"rows {sorted(set(rows) & self.bad)}")
        self.stored += rows
        return len(rows)


@given(st.integers(min_value=1, max_value=300).flatmap(
    lambda n: st.tuples(st.just(n), st.sets(st.integers(min_value=0, max_value=n - 1), max_size=5))))
def test_every_refused_row_is_found_and_every_other_row_written(case):
    n, bad = case
    store = Store(bad)
    inserted, refused = isolate(store.write, list(range(n)), (Refused,))
    assert sorted(index for index, _ in refused) == sorted(bad)
    assert sorted(store.stored) == [row for row in range(n) if row not in bad]
    assert inserted == n - len(bad)
    assert all(isinstance(exc, Refused) for _, exc in refused)
    if not bad:
        assert store.writes == 1  # the common case costs nothing more


def test_an_outage_midway_is_not_taken_for_refused_rows():
    calls = []

    def write(rows):
        calls.append(len(rows))
        if len(calls) == 1:
            raise Refused("row 3")
        raise Down("connection refused")

    with pytest.raises(Down):
        isolate(write, list(range(8)), (Refused,))
