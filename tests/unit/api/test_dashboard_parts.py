"""The dashboard's pure parts: the session cookie's sealing, amounts printed exactly, the SVG
chart, and the usage event a sandbox form describes."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from api.dashboard import charts, money_filters
from api.dashboard.sandbox import event_from
from api.dashboard.sessions import MAX_AGE_S, Sealer, Session, csrf_ok, new_session


def test_a_sealed_session_opens_only_with_its_key_untampered_and_unexpired():
    sealer = Sealer("ab" * 32)
    session = new_session("om_secret-key", "cus_1")
    cookie = sealer.seal(session)
    assert "om_secret-key" not in cookie and "cus_1" not in cookie  # opaque: encrypted, not just signed
    assert sealer.open(cookie) == session
    assert Sealer("cd" * 32).open(cookie) is None
    assert Sealer(None).open(cookie) is None  # a key drawn at random: another API start
    flipped = cookie[:-2] + ("A" if cookie[-2] != "A" else "B") + cookie[-1]
    assert sealer.open(flipped) is None
    assert sealer.open("") is None and sealer.open("not base64 at all!") is None and sealer.open("x" * 5000) is None
    assert sealer.open(cookie, now=time.time() + MAX_AGE_S + 1) is None
    assert sealer.seal(session) != cookie  # a fresh nonce each time


def test_the_secret_must_be_32_bytes_of_hex():
    with pytest.raises(ValueError, match="64 hex"):
        Sealer("abcd")


def test_csrf_tokens_are_per_session_and_compared_exactly():
    one, two = new_session("om_k", "cus_1"), new_session("om_k", "cus_1")
    assert one.csrf != two.csrf and len(one.csrf) >= 32
    assert csrf_ok(one, one.csrf)
    assert not csrf_ok(one, two.csrf) and not csrf_ok(one, None) and not csrf_ok(one, "")
    assert not csrf_ok(Session("om_k", "cus_1", "abc", 0.0), "abcd")


@pytest.mark.parametrize("value, shown", [
    ("1234567.000000000001", "1,234,567.000000000001"),  # never rounded through a float
    (Decimal("100.000000000000"), "100"),
    ("0.1", "0.1"), ("-2.40", "-2.4"), ("0E-12", "0"), (None, "—"), ("", "—"), ("n/a", "n/a"),
])
def test_amounts_are_printed_exactly(value, shown):
    assert money_filters.amount(value) == shown


def test_the_chart_scales_bars_to_the_largest_value_and_keeps_the_decimal_strings():
    svg = str(charts.bars([charts.Point("2026-11-01", "0"), charts.Point("2026-11-02", "2.5"),
                           charts.Point("2026-11-03", "10.000000000001")], "Credits burned", "credits"))
    assert svg.startswith("<svg") and svg.count('class="bar"') == 3
    assert 'data-value="10.000000000001"' in svg and 'data-value="2.5"' in svg
    assert 'height="0.0"' in svg  # the zero day
    assert "<title>2026-11-02: 2.5 credits</title>" in svg
    assert "No credits burned" in str(charts.bars([], "Credits burned"))
    assert "&lt;script&gt;" in str(charts.bars([charts.Point("<script>", "1")], "x"))


def test_a_sandbox_form_becomes_a_token_or_an_image_event():
    now = datetime(2026, 11, 26, 12, tzinfo=timezone.utc)
    text = event_from({"kind": "text", "user_id": " u1 ", "provider": "openai", "model": "gpt-4o",
                       "input_tokens": "1200", "output_tokens": "", "team_id": "t1"}, now)
    assert text["event_type"] == "TOKEN_USAGE" and text["user_id"] == "u1" and text["team_id"] == "t1"
    assert (text["input_tokens"], text["output_tokens"]) == (1200, 0) and text["timestamp"] == now.isoformat()
    assert text["event_id"].startswith("evt_sandbox_")
    image = event_from({"kind": "image", "user_id": "u1", "provider": "openai", "model": "dall-e-3",
                        "image_count": "2", "image_size": "1024x1024", "quality": "hd"}, now)
    assert image["event_type"] == "IMAGE_GENERATION" and image["image_count"] == 2 and image["quality"] == "hd"
    assert "input_tokens" not in image and "team_id" not in image
    assert event_from({"input_tokens": "12x"}, now)["input_tokens"] == "12x"  # left for the API to name the field


def test_cost_and_revenue_bars_side_by_side_with_a_legend():
    svg = str(charts.grouped_bars([charts.Group("2026-11-01", ("0.5", "2")), charts.Group("2026-11-02", ("0", "0"))],
                                  ("provider cost", "revenue"), "Cost vs revenue", "USD"))
    assert svg.count('class="bar series-0"') == 2 and svg.count('class="bar series-1"') == 2
    assert 'data-series="revenue" data-value="2"' in svg and ">provider cost</text>" in svg
    assert "No cost vs revenue" in str(charts.grouped_bars([charts.Group("d", ("0", "0"))], ("a", "b"), "Cost vs revenue"))
