"""The load generator: deterministic, realistic, contract-valid; the token bucket."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from openmonetize.settings import Settings
from producers.loadgen import LATE_MAX, LATE_MIN, EventGenerator, TokenBucket
from schemas.usage_event import EventLimits, convert_event, to_record

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
TENANTS = ["cus_a", "cus_b", "cus_c"]


def generator(seed: int = 42, duplicates: float = 0.01, late: float = 0.01, users: int = 100) -> EventGenerator:
    return EventGenerator(seed, TENANTS, users, duplicates, late, now=lambda: NOW)


def test_same_seed_same_events_other_seed_other_events():
    assert generator(1).batch(3000) == generator(1).batch(3000)
    assert generator(1).batch(100) != generator(2).batch(100)


def test_tenant_count_names_loadgen_tenants():
    events = EventGenerator(3, 2, 10, now=lambda: NOW).batch(200)
    assert {e["customer_id"] for e in events} == {"loadgen-1", "loadgen-2"}


def test_every_event_passes_the_contract():
    limits = EventLimits.from_settings(Settings(_env_file=None))
    for event in generator(5, 0.02, 0.1).batch(10_000):
        record = to_record(convert_event(event), customer_id=event["customer_id"], source="kafka",
                           received_at=NOW, limits=limits)
        assert record["event_id"] == event["event_id"]


@pytest.mark.parametrize("share", [0.01, 0.05, 0.2])
def test_duplicate_share_and_duplicates_are_identical_resends(share):
    gen = generator(9, duplicates=share)
    events = gen.batch(10_000)
    first: dict[str, dict] = {}
    duplicates = 0
    for event in events:
        if event["event_id"] in first:
            duplicates += 1
            assert event == first[event["event_id"]]  # same event_id, same body
        else:
            first[event["event_id"]] = event
    assert duplicates == gen.duplicates
    assert abs(duplicates / len(events) - share) < max(0.01, share * 0.2)


def test_late_events_are_inside_the_window_and_the_others_are_now():
    gen = generator(11, duplicates=0.0, late=0.1)
    ages = [NOW - datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")) for e in gen.batch(10_000)]
    late = [a for a in ages if a >= LATE_MIN]
    assert abs(len(late) / len(ages) - 0.1) < 0.02 and len(late) == gen.late
    assert all(LATE_MIN <= a <= LATE_MAX < timedelta(days=35) for a in late)
    assert all(timedelta(0) <= a <= timedelta(seconds=2) for a in ages if a < LATE_MIN)


def test_the_mix_is_realistic():
    events = generator(13, 0, 0, users=200).batch(10_000)
    types = Counter(e["event_type"] for e in events)
    assert types["TOKEN_USAGE"] > 0.7 * len(events)
    assert all(types[t] > 0 for t in ("EMBEDDING", "IMAGE_GENERATION", "AUDIO", "CUSTOM"))
    models = {(e.get("provider"), e.get("model")) for e in events}
    for expected in [("openai", "gpt-4o"), ("openai", "gpt-4o-mini"), ("openai", "o3-mini"),
                     ("openai", "text-embedding-3-small"), ("openai", "dall-e-3"), ("openai", "gpt-image-1"),
                     ("anthropic", "claude-sonnet-4-20250514"), ("google", "gemini-2.5-flash")]:
        assert expected in models
    tokens = sorted(e["input_tokens"] for e in events if e["event_type"] == "TOKEN_USAGE")
    median, p99 = tokens[len(tokens) // 2], tokens[int(len(tokens) * 0.99)]
    assert 300 < median < 3000 and p99 > 5 * median  # log-normal: a long tail
    assert any("team_id" in e for e in events) and any("team_id" not in e for e in events)
    assert any("cached_input_tokens" in e for e in events)
    users = Counter(e["user_id"] for e in events)
    assert users.most_common(1)[0][1] > 5 * (len(events) / 200)  # a few heavy users


def test_shares_are_checked():
    with pytest.raises(ValueError, match="duplicate_share"):
        EventGenerator(1, TENANTS, 10, duplicate_share=1.5)
    with pytest.raises(ValueError, match="tenants"):
        EventGenerator(1, [], 10)


def test_token_bucket_holds_the_rate():
    clock = [0.0]
    bucket = TokenBucket(1000, clock=lambda: clock[0])
    taken = 0
    for _ in range(1000):  # 1 s in 1 ms steps
        clock[0] += 0.001
        taken += bucket.take_available(10_000)
    assert 999 <= taken <= 1000
    clock[0] += 10  # an idle pause saves up at most the burst (0.1 s worth)
    assert bucket.take_available(10_000) == 100
    assert bucket.wait_time() == pytest.approx(0.001)
