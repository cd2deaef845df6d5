"""The pure rules of plans (openmonetize/plans/periods.py) and the catalog's feature gating index."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from openmonetize.catalog.index import CatalogIndex
from openmonetize.catalog.json_codec import decode, encode, key_of
from openmonetize.catalog.records import PlanRecord, SubscriptionRecord
from openmonetize.plans import periods

T0 = datetime(2026, 1, 31, 12, 0, tzinfo=timezone.utc)


def test_months_are_counted_from_the_anchor_and_clamped_to_the_month():
    starts = [periods.period_start(T0, "month", 1, k) for k in range(4)]
    assert [s.date().isoformat() for s in starts] == ["2026-01-31", "2026-02-28", "2026-03-31", "2026-04-30"]
    assert periods.period_start(T0, "month", 3, 1).date().isoformat() == "2026-04-30"  # quarterly
    assert periods.period_start(T0, "year", 1, 2) == T0.replace(year=2028)
    assert periods.period_start(T0, "week", 2, 1) == T0 + timedelta(weeks=2)
    assert periods.period_start(T0, "day", 1, 3) == T0 + timedelta(days=3)
    with pytest.raises(ValueError):
        periods.period_start(T0, "fortnight", 1, 1)


def test_command_ids_derive_from_tenant_subscription_and_period_start():
    one = periods.command_id("cus_a", "sub_1", T0)
    assert one == periods.command_id("cus_a", "sub_1", T0)
    assert len({one, periods.command_id("cus_b", "sub_1", T0), periods.command_id("cus_a", "sub_2", T0),
                periods.command_id("cus_a", "sub_1", T0 + timedelta(days=1)),
                periods.command_id("cus_a", "sub_1", T0, "rollover")}) == 5


@pytest.mark.parametrize("rollover, cap, expected", [
    ("none", None, [("100", "end")]),
    ("full", None, [("100", None)]),
    ("capped", "30", [("70", "end"), ("30", "next")]),
    ("capped", "100", [("100", "next")]),
    ("capped", "500", [("100", "next")]),
])
def test_the_lots_of_a_period_carry_out_the_rollover(rollover, cap, expected):
    end, next_end = T0 + timedelta(days=28), T0 + timedelta(days=59)
    lots = periods.lots("cus", "sub", Decimal(100), rollover, Decimal(cap) if cap else None, T0, end, next_end)
    named = {"end": end, "next": next_end, None: None}
    assert [(str(lot.amount), lot.expires_at) for lot in lots] == [(a, named[e]) for a, e in expected]
    assert len({lot.command_id for lot in lots}) == len(lots)


def _plan(plan_id, features=None, excluded=()):
    return PlanRecord(plan_id, "cus", plan_id, Decimal(1), "month", 1, "none", None, features, excluded, 0, T0)


def _sub(sid, plan_id, user_id=None, team_id=None, status="active"):
    return SubscriptionRecord(sid, "cus", plan_id, user_id, team_id, f"w:cus:user:{user_id}", status, T0,
                              T0 if status == "cancelled" else None, T0)


def test_the_catalog_knows_each_subjects_active_plans_through_the_codec():
    index = CatalogIndex()
    for record in (_plan("basic", ("chat",)), _plan("plus", None, ("video",)), _sub("s1", "basic", user_id="u"),
                   _sub("s2", "plus", team_id="t")):
        index.apply(key_of(record), decode(encode(record)))
    assert [p.plan_id for p in index.active_plans("cus", "u", None)] == ["basic"]
    assert [p.plan_id for p in index.active_plans("cus", "u", "t")] == ["basic", "plus"]
    assert index.active_plans("other", "u", "t") == []
    assert index.plans_including("cus", "images") == ["plus"]
    assert not index.plan("cus", "plus").includes("video")
    cancelled = _sub("s1", "basic", user_id="u", status="cancelled")
    index.apply(key_of(cancelled), decode(encode(cancelled)))
    assert index.active_plans("cus", "u", None) == []
