"""What a replay refuses before it starts, and the days a rollup rebuild covers."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from openmonetize.analytics.rollups import whole_days
from openmonetize.rebilling.replay import ReplayRefused, ReplayRequest
from openmonetize.settings import Settings

NOW = datetime(2026, 11, 26, 12, 30, tzinfo=timezone.utc)
SETTINGS = Settings(replay_max_range_days=31)


def problems(**fields) -> list[tuple[str, str]]:
    base = {"customer_id": "cus_a", "start": NOW - timedelta(days=1), "end": NOW}
    return ReplayRequest(**{**base, **fields}).problems(SETTINGS)


def test_a_range_within_the_limit_may_run():
    assert problems() == [] and problems(apply=True, rebuild_analytics=True) == []


def test_each_refusal_names_its_field():
    assert [f for f, _ in problems(end=NOW - timedelta(days=2))] == ["to"]
    assert [f for f, _ in problems(start=NOW.replace(tzinfo=None))] == ["from"]
    assert [f for f, _ in problems(customer_id="", burn_table_version=0)] == ["customer_id", "burn_table_version"]
    assert [f for f, _ in problems(rebuild_analytics=True)] == ["rebuild_analytics"]


def test_a_range_wider_than_the_setting_needs_force():
    [(field, reason)] = problems(start=NOW - timedelta(days=32))
    assert field == "from" and "REPLAY_MAX_RANGE_DAYS (31)" in reason and "--force" in reason
    assert problems(start=NOW - timedelta(days=32), force=True) == []


def test_the_message_names_the_cli_options():
    assert str(ReplayRefused([("to", "must be after from"), ("customer_id", "required")])) == (
        "--to: must be after from; --customer: required")


def test_a_rollup_rebuild_covers_whole_utc_days():
    assert whole_days(NOW - timedelta(days=1), NOW) == (datetime(2026, 11, 25, tzinfo=timezone.utc),
                                                        datetime(2026, 11, 27, tzinfo=timezone.utc))
    midnight = datetime(2026, 11, 26, tzinfo=timezone.utc)
    assert whole_days(midnight - timedelta(days=1), midnight) == (midnight - timedelta(days=1), midnight)
