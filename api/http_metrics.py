"""Request count and latency per route of the API, as a pure ASGI middleware: Starlette's
BaseHTTPMiddleware (`@app.middleware("http")`) runs each request in a task of its own with a
stream in between, which costs about as much as an entitlement check itself. Added last, so it
is outermost and also counts the 413s and 429s of the limits (route `unmatched`)."""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram

REQUESTS = Counter("openmonetize_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "openmonetize_http_request_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)


class HttpMetrics:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = 500  # unless the app answers: an exception escaping it is a 500

        async def observed(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")  # the router sets scope["route"]
            LATENCY.labels(scope["method"], path).observe(time.perf_counter() - start)
            REQUESTS.labels(scope["method"], path, str(status)).inc()
