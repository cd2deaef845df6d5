"""Forwarding one planned call upstream and its answer back, byte for byte.

Request headers pass through except the `X-OM-*` ones (ours), the hop-by-hop ones and
`Accept-Encoding` (the proxy asks for identity: it must read the usage in the body; the client
gets the same content, uncompressed). Response headers pass through except the hop-by-hop
ones, the length and the encoding, plus `x-openmonetize-overhead-ms`: the time the proxy added
before the request went upstream and after its answer's headers came back.

A stream is relayed chunk by chunk as it arrives. When the client goes away the generator is
cancelled: the upstream connection is closed (the provider stops generating) and what was
streamed is billed. A failed upstream answer (not 2xx) is passed through and billed nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timezone

import aiohttp
from prometheus_client import Counter, Histogram
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from api.proxy.billing import Billing
from api.proxy.calls import Call, Refusal
from api.proxy.identity import Identity
from openmonetize.logs import get_logger

log = get_logger(__name__)

OVERHEAD_HEADER = b"x-openmonetize-overhead-ms"
_REQUEST_DROP = frozenset({
    b"host", b"content-length", b"connection", b"keep-alive", b"proxy-connection", b"proxy-authorization",
    b"transfer-encoding", b"te", b"trailer", b"upgrade", b"accept-encoding", b"expect",
})
_RESPONSE_DROP = frozenset({
    b"content-length", b"content-encoding", b"connection", b"keep-alive", b"transfer-encoding", b"trailer", b"upgrade",
})
_REQUEST_ID_HEADERS = (b"x-request-id", b"request-id")

REQUESTS = Counter(
    "openmonetize_proxy_requests_total",
    "Proxied calls by provider, endpoint, answer status and who answered (upstream, or the proxy itself: refusals, "
    "unreachable upstreams)",
    ["provider", "endpoint", "status", "origin"],
)
OVERHEAD = Histogram(
    "openmonetize_proxy_overhead_seconds",
    "Time the proxy adds to a call (x-openmonetize-overhead-ms): before the request goes upstream and after the answer's "
    "headers come back",
    ["provider"],
    buckets=(0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1),
)


def upstream_headers(request: Request) -> list[tuple[str, str]]:
    headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in request.headers.raw
               if name not in _REQUEST_DROP and not name.startswith(b"x-om-")]
    headers.append(("Accept-Encoding", "identity"))
    return headers


def _answer_headers(upstream: aiohttp.ClientResponse) -> list[tuple[bytes, bytes]]:
    return [(name.lower(), value) for name, value in upstream.raw_headers if name.lower() not in _RESPONSE_DROP]


def _request_id(upstream: aiohttp.ClientResponse) -> str | None:
    for name in _REQUEST_ID_HEADERS:
        value = upstream.headers.get(name.decode())
        if value:
            return value
    return None


def overhead_header(seconds: float) -> tuple[bytes, bytes]:
    return OVERHEAD_HEADER, f"{seconds * 1000:.3f}".encode()


async def forward(session: aiohttp.ClientSession, url: str, request: Request, call: Call, who: Identity, billing: Billing,
                  started: float, refuse: Callable[[Refusal, float, str], Response]) -> Response:
    """Send `call` upstream and answer with what comes back; `started` is when the request arrived."""
    started_at = datetime.now(timezone.utc)
    headers = upstream_headers(request)
    sent = time.perf_counter()
    try:
        upstream = await session.post(url, data=call.body, headers=headers)
    except asyncio.TimeoutError:
        return refuse(Refusal(504, "timeout", f"OpenMonetize proxy: the {call.provider} upstream did not answer in time"),
                      sent - started, call.endpoint)
    except aiohttp.ClientError as exc:
        log.warning("proxy_upstream_unreachable", provider=call.provider, error=str(exc)[:300])
        return refuse(Refusal(502, "unavailable", f"OpenMonetize proxy: the {call.provider} upstream cannot be reached "
                                                  f"({type(exc).__name__})"), sent - started, call.endpoint)
    answered = time.perf_counter()
    status = upstream.status
    raw_headers = _answer_headers(upstream)
    ok = 200 <= status < 300
    REQUESTS.labels(call.provider, call.endpoint, str(status), "upstream").inc()
    if call.stream and ok:
        overhead = (sent - started) + (time.perf_counter() - answered)
        OVERHEAD.labels(call.provider).observe(overhead)
        response = StreamingResponse(_relay(upstream, call, who, billing, started_at), status)
        response.raw_headers = [*raw_headers, overhead_header(overhead)]
        return response
    try:
        body = await upstream.read()
    except (asyncio.TimeoutError, aiohttp.ClientError) as exc:
        upstream.close()
        log.warning("proxy_upstream_failed", provider=call.provider, status=status, error=repr(exc)[:300])
        return refuse(Refusal(502, "unavailable", f"OpenMonetize proxy: the {call.provider} upstream's answer broke off"),
                      sent - started, call.endpoint)
    read = time.perf_counter()
    upstream.release()
    if ok:
        try:
            call.meter.body(body)
        except Exception as exc:  # noqa: BLE001 - the answer still goes to the client; billing says what it could not read
            log.error("proxy_usage_unreadable", provider=call.provider, endpoint=call.endpoint, error=repr(exc)[:300])
        billing.bill(who, call, started_at, _request_id(upstream))
    response = Response(body, status)
    overhead = (sent - started) + (time.perf_counter() - read)
    OVERHEAD.labels(call.provider).observe(overhead)
    response.raw_headers = [*raw_headers, (b"content-length", str(len(body)).encode()), overhead_header(overhead)]
    return response


async def _relay(upstream: aiohttp.ClientResponse, call: Call, who: Identity, billing: Billing,
                 started_at: datetime) -> AsyncIterator[bytes]:
    complete = False
    metering = True
    try:
        async for data in upstream.content.iter_any():
            out = data
            if metering:
                try:
                    out = call.meter.chunk(data)
                except Exception as exc:  # noqa: BLE001 - an event we cannot read: the client still gets the stream
                    metering = False
                    log.error("proxy_usage_unreadable", provider=call.provider, endpoint=call.endpoint, error=repr(exc)[:300])
            if out:
                yield out
        tail = call.meter.end()
        if tail:
            yield tail
        complete = True
    finally:
        if complete:
            upstream.release()
        else:  # the client went away, or the upstream broke off: stop the upstream generating
            upstream.close()
            log.info("proxy_stream_cut", provider=call.provider, endpoint=call.endpoint, customer_id=who.customer_id,
                     user_id=who.user_id)
        billing.bill(who, call, started_at, _request_id(upstream))
