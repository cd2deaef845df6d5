"""When the SDK tries a request again, and how long it waits first.

A request is retried on 429 (the API's rate limit refuses before doing anything), on 503, and
on transport errors, at most `max_retries` times. Only requests that are safe to repeat are
retried after the API may have acted on them (a 503, a read timeout, a dropped connection):
reads, rating, events (the pipeline drops an event_id it has seen) and the POSTs that carry an
Idempotency-Key, which the SDK generates once per call and sends on every try. A POST without
one (creating a burn table) is retried only when the API surely did nothing: a 429, or a
connection that could not be opened (nothing was sent).

The wait is the API's Retry-After when it sends one, else exponential backoff with jitter:
uniformly between half and all of min(max_backoff_s, backoff_s * 2**retry); never more than
max_backoff_s.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import httpx

from openmonetize.sdk.errors import retry_after_s

RETRIED_STATUSES = (429, 503)


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 3
    backoff_s: float = 0.25
    max_backoff_s: float = 8.0

    def __post_init__(self):
        if self.max_retries < 0 or self.backoff_s < 0 or self.max_backoff_s < 0:
            raise ValueError("max_retries, backoff_s and max_backoff_s must be >= 0")

    def delay_s(self, retry: int, response: httpx.Response | None, rand: random.Random | None = None) -> float:
        """Seconds to wait before retry number `retry` (0 for the first)."""
        if response is not None and (after := retry_after_s(response.headers)) is not None:
            return min(after, self.max_backoff_s)
        ceiling = min(self.max_backoff_s, self.backoff_s * 2**retry)
        return (rand or random).uniform(ceiling / 2, ceiling)


def retry_response(response: httpx.Response, repeatable: bool) -> bool:
    """Whether an answer calls for another try."""
    return response.status_code == 429 or (repeatable and response.status_code in RETRIED_STATUSES)


def retry_error(error: httpx.TransportError, repeatable: bool) -> bool:
    """Whether a transport error calls for another try: a connection never opened always,
    anything else (timeouts, dropped connections) only for a repeatable request."""
    return isinstance(error, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)) or repeatable
