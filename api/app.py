"""The HTTP API application: health, readiness and metrics now; the routes of later issues
(ingest, control plane, entitlements, reports) are mounted here as routers."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

import psycopg
from confluent_kafka.admin import AdminClient
from fastapi import FastAPI, Response
from fastapi.responses import ORJSONResponse, PlainTextResponse
from psycopg_pool import ConnectionPool

from api import auth, catalog_state, dashboard, errors, openapi_docs, wallet_access
from api.body_limits import BodyLimits
from api.content_encoding import ContentEncodings
from api.http_metrics import HttpMetrics
from api.rate_limits import RateLimits
from api.url_checks import UrlChecks
from api.routes import (
    api_keys, burn_tables, cloudevents, credits, dlq, entitlements, ingest, ledger, plans, pricing, rating, rebilling,
    reports, schema_registry, tenant_settings, users_and_teams,
)
from openmonetize import metrics
from openmonetize.logs import get_logger
from openmonetize.settings import Settings, get_settings
from schemas.registry import SchemaRegistry
from schemas.registry_client import open_registry

log = get_logger(__name__)

@asynccontextmanager
async def _lifespan(app: FastAPI):
    """The process's Postgres pool, opened before the routers' lifespans run and closed after."""
    app.state.db.open(wait=False)
    try:
        yield
    finally:
        await asyncio.to_thread(app.state.db.close)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="OpenMonetize",
        version="0.1.0",
        description="Usage metering and prepaid-credit billing for AI SaaS, streaming on Kafka.",
        default_response_class=ORJSONResponse,
        lifespan=_lifespan,
    )
    app.state.settings = settings
    # One pool per process; connections are checked on checkout, so a Postgres restart costs
    # the requests in flight, not every request until the API restarts.
    app.state.db = ConnectionPool(
        settings.database_url, min_size=1, max_size=8, open=False, check=ConnectionPool.check_connection,
        timeout=settings.database_pool_timeout_s, kwargs={"connect_timeout": max(1, int(settings.database_pool_timeout_s))},
    )
    app.state.schema_registry = SchemaRegistry(app.state.db)  # what the registry routes serve
    app.state.codec_registry = open_registry(settings, app.state.db)  # what this process's codecs use
    app.include_router(schema_registry.router)
    errors.install(app)
    app.include_router(auth.router)  # its lifespan makes the API-key cache and hears of revocations
    app.include_router(ingest.router)  # its lifespan starts the Kafka producer and registers the event schema
    app.include_router(cloudevents.router)
    app.include_router(catalog_state.router)  # its lifespan loads the billing catalog and opens its publisher
    app.include_router(burn_tables.router)
    app.include_router(pricing.router)
    app.include_router(rating.router)
    app.include_router(tenant_settings.router)
    app.include_router(wallet_access.router)  # its lifespan opens the wallet.balances view
    app.include_router(credits.router)
    app.include_router(entitlements.router)  # its lifespan keeps this process's holds and lapses them at expiry
    app.include_router(ledger.router)
    app.include_router(dlq.router)
    app.include_router(api_keys.router)
    app.include_router(users_and_teams.router)
    app.include_router(reports.router)  # its lifespan owns the ClickHouse client
    app.include_router(rebilling.router)
    app.include_router(plans.router)  # its lifespan runs the plans scheduler every PLANS_SCHEDULER_INTERVAL_S
    dashboard.install(app)  # /dashboard: HTML pages over the routes above, outside the OpenAPI schema
    # Pure ASGI middlewares, so cheap; the last added is the outermost: metrics, rate, encoding, size, URL.
    app.add_middleware(UrlChecks)
    app.add_middleware(BodyLimits, api_max_bytes=settings.api_max_body_bytes, ingest_max_bytes=settings.ingest_max_body_bytes)
    app.add_middleware(ContentEncodings)  # 415 for a compressed body, before its size is counted
    app.add_middleware(RateLimits, rate_per_s=settings.api_rate_limit_per_s, burst=settings.api_rate_limit_burst)
    app.add_middleware(HttpMetrics)
    openapi_docs.install(app)

    @app.get("/health", tags=["operations"], summary="The process is up")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get(
        "/ready",
        tags=["operations"],
        summary="Dependencies answer (Postgres, Kafka), the usage event schema is registered, the catalog and wallet balances are loaded",
        responses={503: {"description": "A dependency does not answer; `checks` says which"}},
    )
    async def ready() -> Response:
        checks = await asyncio.gather(
            asyncio.to_thread(_check_postgres, settings), asyncio.to_thread(_check_kafka, settings)
        )
        body = {"status": "ok", "checks": dict(zip(("postgres", "kafka"), checks))}
        body["checks"]["event_schema"] = app.state.intake.schema_status
        body["checks"]["catalog"] = app.state.catalog_status
        body["checks"]["wallet_balances"] = app.state.wallets_status
        if any(value != "ok" for value in body["checks"].values()):
            body["status"] = "unavailable"
            return ORJSONResponse(body, status_code=503)
        return ORJSONResponse(body)

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics", response_class=PlainTextResponse)
    async def prometheus() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    return app


def _check_postgres(settings: Settings) -> str:
    try:
        with psycopg.connect(settings.database_url, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return "ok"
    except psycopg.Error as exc:
        return f"error: {str(exc).strip()[:200]}"


def _check_kafka(settings: Settings) -> str:
    try:
        AdminClient({"bootstrap.servers": settings.kafka_bootstrap}).list_topics(timeout=2)
        return "ok"
    except Exception as exc:  # noqa: BLE001 - any client error means "not ready"
        return f"error: {str(exc)[:200]}"
