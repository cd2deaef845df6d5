"""Token buckets keyed by bytes, for the API's rate limits (api/rate_limits.py: per API key;
api/auth.py: failed key lookups per client address)."""

from __future__ import annotations

import time

MAX_BUCKETS = 100_000  # beyond this, full buckets are forgotten (they would allow the same as a new one)


class TokenBuckets:
    """Per key: tokens and when they were counted. `take` spends one token or says how long to wait."""

    def __init__(self, rate_per_s: float, burst: int, clock=time.monotonic):
        self.rate = rate_per_s
        self.burst = burst
        self.clock = clock
        self._buckets: dict[bytes, tuple[float, float]] = {}

    def wait(self, key: bytes) -> float:
        """Like `take`, without spending the token."""
        now = self.clock()
        tokens, at = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        return 0.0 if tokens >= 1 else (1 - tokens) / self.rate

    def take(self, key: bytes) -> float:
        """0 if the request may go, else the seconds until a token is there."""
        now = self.clock()
        tokens, at = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens >= 1:
            self._remember(key, tokens - 1, now)
            return 0.0
        self._remember(key, tokens, now)
        return (1 - tokens) / self.rate

    def _remember(self, key: bytes, tokens: float, now: float) -> None:
        if key not in self._buckets and len(self._buckets) >= MAX_BUCKETS:
            refill_s = self.burst / self.rate
            self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < refill_s}
            if len(self._buckets) >= MAX_BUCKETS:
                self._buckets.clear()
        self._buckets[key] = (tokens, now)
