"""The proxy's ASGI application: the providers' routes, `/health`, `/ready`, `/metrics`.

Per call: identify the tenant and user (X-OM-* headers, the cached API key), plan the call
(provider module), check the user's credits (unless PROXY_ENFORCE=false), forward. Whatever the
proxy refuses itself it answers in the provider's error format, so the provider's SDK raises
its usual error class (401 AuthenticationError, 402 with the message, ...).
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from contextlib import AsyncExitStack, asynccontextmanager
from types import ModuleType

import aiohttp
from psycopg_pool import ConnectionPool
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api import auth, catalog_state, intake, wallet_access
from api.proxy import anthropic, enforcement, gemini, openai
from api.proxy.billing import Billing
from api.proxy.calls import Call, Refusal
from api.proxy.forwarding import REQUESTS, forward, overhead_header
from api.proxy.identity import identify
from openmonetize import metrics
from openmonetize.logs import get_logger
from openmonetize.settings import Settings
from schemas.registry_client import open_registry

log = get_logger(__name__)

DRAIN_TIMEOUT_S = 10.0


@asynccontextmanager
async def _lifespan(app: Starlette):
    """The API's own parts, each with its lifespan: the API-key cache, the ingest step (Kafka
    producer, event schema), the catalog and wallet-balances views; then the upstream pool."""
    settings: Settings = app.state.settings
    app.state.db = ConnectionPool(settings.database_url, min_size=1, max_size=4, open=False,
                                  check=ConnectionPool.check_connection)
    app.state.db.open(wait=False)
    app.state.codec_registry = open_registry(settings, app.state.db)
    async with AsyncExitStack() as parts:
        for lifespan in (auth.lifespan, intake.lifespan, catalog_state.lifespan, wallet_access.lifespan):
            await parts.enter_async_context(lifespan(app))
        connector = aiohttp.TCPConnector(limit_per_host=settings.proxy_upstream_connections, ttl_dns_cache=300)
        timeout = aiohttp.ClientTimeout(total=None, connect=settings.proxy_connect_timeout_s,
                                        sock_read=settings.proxy_read_timeout_s)
        # No cookie jar: one client's upstream cookies must never go out with another client's call.
        app.state.upstream = aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=True,
                                                   cookie_jar=aiohttp.DummyCookieJar(), skip_auto_headers=("User-Agent",))
        app.state.billing = Billing(app.state.intake)
        freezing = asyncio.create_task(_freeze_when_loaded(app))
        log.info("proxy_started", port=settings.proxy_port, enforce=settings.proxy_enforce,
                 openai=settings.proxy_openai_base_url, anthropic=settings.proxy_anthropic_base_url,
                 gemini=settings.proxy_gemini_base_url)
        try:
            yield
        finally:
            freezing.cancel()
            await app.state.billing.drain(DRAIN_TIMEOUT_S)
            await app.state.upstream.close()
    await asyncio.to_thread(app.state.db.close)


async def _freeze_when_loaded(app: Starlette) -> None:
    """Once the catalog and balances are in memory, move everything alive to the permanent
    generation: a full collection then no longer walks those ~150,000 objects (it took over
    100 ms on the development box, a pause every call in flight would wait out)."""
    while not (app.state.catalog_status == app.state.wallets_status == "ok"):
        await asyncio.sleep(0.5)
    gc.collect()
    gc.freeze()
    log.info("proxy_heap_frozen", objects=gc.get_freeze_count())


def create_app(settings: Settings) -> Starlette:
    bases = {
        openai: settings.proxy_openai_base_url.rstrip("/"),
        anthropic: settings.proxy_anthropic_base_url.rstrip("/"),
        gemini: settings.proxy_gemini_base_url.rstrip("/"),
    }

    def route(provider: ModuleType, plan: Callable[[Request, bytes], Call]):
        async def handle(request: Request) -> Response:
            return await _proxy(request, provider, plan, bases[provider])
        return handle

    routes = [Route(path, route(openai, lambda r, raw: openai.plan(r.url.path, raw)), methods=["POST"])
              for path in openai.ENDPOINTS]
    routes += [Route(path, route(anthropic, lambda r, raw: anthropic.plan(r.url.path, raw)), methods=["POST"])
               for path in anthropic.ENDPOINTS]
    routes.append(Route("/{version}/models/{method}", methods=["POST"], endpoint=route(
        gemini, lambda r, raw: gemini.plan(r.url.path, raw, sse_stream=r.query_params.get("alt") == "sse"))))
    routes += [Route("/health", _health), Route("/ready", _ready), Route("/metrics", _metrics)]
    app = Starlette(routes=routes, lifespan=_lifespan)
    app.state.settings = settings
    return app


async def _proxy(request: Request, provider: ModuleType, plan: Callable[[Request, bytes], Call], base: str) -> Response:
    started = time.perf_counter()
    state = request.app.state
    settings: Settings = state.settings

    def refuse(refusal: Refusal, overhead: float, endpoint: str = "unplanned") -> Response:
        REQUESTS.labels(provider.PROVIDER, endpoint, str(refusal.status), "proxy").inc()
        log.info("proxy_refused", provider=provider.PROVIDER, path=request.url.path, status=refusal.status,
                 kind=refusal.kind, reason=refusal.message)
        response = Response(provider.render(refusal), refusal.status, media_type="application/json")
        response.raw_headers.append(overhead_header(overhead))
        return response

    call = None
    try:
        who = await identify(request.headers, state.api_keys, auth.client_address(request))
        raw = await _body(request, settings.proxy_max_body_bytes)
        call = plan(request, raw)
        if settings.proxy_enforce:
            enforcement.require(settings, state.catalog, state.wallet_balances, state.wallet_directory, who, call)
    except Refusal as refusal:
        return refuse(refusal, time.perf_counter() - started, call.endpoint if call is not None else "unplanned")
    url = base + request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return await forward(state.upstream, url, request, call, who, state.billing, started, refuse)


async def _body(request: Request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise Refusal(413, "invalid_request", f"OpenMonetize proxy: the body is {declared} bytes, at most "
                                              f"{max_bytes} (PROXY_MAX_BODY_BYTES)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise Refusal(413, "invalid_request", f"OpenMonetize proxy: the body exceeds {max_bytes} bytes (PROXY_MAX_BODY_BYTES)")
        chunks.append(chunk)
    return b"".join(chunks)


async def _health(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def _ready(request: Request) -> Response:
    """Ready once the event schema is registered and the catalog and balances are loaded."""
    state = request.app.state
    checks = {"event_schema": state.intake.schema_status, "catalog": state.catalog_status,
              "wallet_balances": state.wallets_status}
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse({"status": "ok" if ready else "unavailable", "checks": checks}, 200 if ready else 503)


async def _metrics(_request: Request) -> Response:
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
