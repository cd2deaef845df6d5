"""The SDK's retry rules and backoff, and what it refuses to send."""

from __future__ import annotations

import random
from decimal import Decimal

import httpx
import pytest

from openmonetize.sdk import RetryPolicy
from openmonetize.sdk.errors import RateLimitError, ServiceUnavailableError, error_from
from openmonetize.sdk.operations import money
from openmonetize.sdk.retries import retry_error, retry_response


def answer(status: int, headers: dict | None = None, body: bytes = b"") -> httpx.Response:
    return httpx.Response(status, headers=headers, content=body)


def test_backoff_grows_exponentially_with_jitter_and_is_capped():
    policy = RetryPolicy(backoff_s=0.5, max_backoff_s=3)
    rand = random.Random(7)
    for retry, ceiling in enumerate([0.5, 1, 2, 3, 3]):
        delays = [policy.delay_s(retry, None, rand) for _ in range(200)]
        assert ceiling / 2 <= min(delays) and max(delays) <= ceiling
        assert len(set(delays)) > 100  # jittered, not one value


def test_retry_after_is_honoured_up_to_the_cap():
    policy = RetryPolicy(max_backoff_s=3)
    assert policy.delay_s(0, answer(429, {"Retry-After": "2"})) == 2
    assert policy.delay_s(0, answer(503, {"Retry-After": "60"})) == 3


@pytest.mark.parametrize("status, repeatable, retried", [
    (429, False, True), (429, True, True), (503, True, True), (503, False, False),
    (500, True, False), (422, True, False), (200, True, False),
])
def test_which_answers_are_retried(status, repeatable, retried):
    assert retry_response(answer(status), repeatable) is retried


def test_a_connection_never_opened_is_always_retried_a_lost_answer_only_when_repeatable():
    request = httpx.Request("POST", "http://x")
    assert retry_error(httpx.ConnectError("refused", request=request), repeatable=False)
    assert not retry_error(httpx.ReadTimeout("slow", request=request), repeatable=False)
    assert retry_error(httpx.RemoteProtocolError("dropped", request=request), repeatable=True)


def test_errors_carry_the_api_body():
    limited = error_from(answer(429, {"Retry-After": "1"},
                                b'{"error": {"code": "rate_limited", "message": "slow down"}}'))
    assert isinstance(limited, RateLimitError) and (limited.code, limited.retry_after) == ("rate_limited", 1)
    unavailable = error_from(answer(503, body=b"<html>bad gateway</html>"))
    assert isinstance(unavailable, ServiceUnavailableError) and unavailable.code == "http_error"


def test_money_is_sent_as_exact_decimal_text_and_a_float_is_refused():
    assert money(Decimal("0.1"), "amount") == "0.1" and money(5, "amount") == "5"
    with pytest.raises(TypeError, match="rules.x.unit"):
        money(0.1, "rules.x.unit")
    with pytest.raises(TypeError):
        money(True, "amount")
