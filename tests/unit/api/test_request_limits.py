"""The per-key token buckets and the two ASGI middlewares (size, rate) around a tiny app that
reads its body as our routes do."""

from __future__ import annotations

import httpx
import pytest
from fastapi import Body, FastAPI, Request

from api import errors
from api.body_limits import BodyLimits
from api.rate_limits import RateLimits
from api.token_buckets import TokenBuckets


@pytest.fixture
def anyio_backend():
    return "asyncio"


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_the_burst_then_one_request_per_token_refilled():
    clock = Clock()
    buckets = TokenBuckets(rate_per_s=2, burst=3, clock=clock)
    assert [buckets.take(b"k") for _ in range(3)] == [0, 0, 0]
    assert buckets.take(b"k") == pytest.approx(0.5)  # one token takes 1/2 s
    clock.now += 0.5
    assert buckets.take(b"k") == 0
    assert buckets.take(b"k") == pytest.approx(0.5)
    assert buckets.take(b"other") == 0  # each key has its own bucket
    clock.now += 60
    assert [buckets.take(b"k") for _ in range(4)][:3] == [0, 0, 0]  # refilled up to the burst, not beyond


def app(api_max=100, ingest_max=1000, rate=0.0, burst=1) -> FastAPI:
    application = FastAPI()
    errors.install(application)

    @application.post("/v1/things")
    async def things(request: Request):
        return {"bytes": len(await request.body())}

    @application.post("/v1/events/ingest")
    async def ingest(request: Request):
        return {"bytes": len(await request.body())}

    @application.post("/declared")
    async def declared(body: dict = Body(...)):  # FastAPI reads this body itself
        return {"keys": len(body)}

    application.add_middleware(BodyLimits, api_max_bytes=api_max, ingest_max_bytes=ingest_max)
    application.add_middleware(RateLimits, rate_per_s=rate, burst=burst)
    return application


async def client(application: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(application), base_url="http://test")


def chunked(size: int):
    async def body():
        for _ in range(size // 10):
            yield b"x" * 10

    return body()


@pytest.mark.anyio
@pytest.mark.parametrize("path, limit, setting", [("/v1/things", 100, "API_MAX_BODY_BYTES"),
                                                  ("/v1/events/ingest", 1000, "INGEST_MAX_BODY_BYTES")])
async def test_a_body_over_its_route_limit_is_413_naming_the_limit(path, limit, setting):
    async with await client(app()) as http:
        assert (await http.post(path, content=b"x" * limit)).json() == {"bytes": limit}
        for content in (b"x" * (limit + 1), chunked(limit + 10)):
            refused = await http.post(path, content=content)
            assert refused.status_code == 413
            error = refused.json()["error"]
            assert error["code"] == "body_too_large" and f"at most {limit} bytes ({setting})" in error["message"]


@pytest.mark.anyio
async def test_a_chunked_body_read_by_fastapi_itself_is_413_too():
    async with await client(app()) as http:
        refused = await http.post("/declared", content=chunked(200))
    assert refused.status_code == 413 and refused.json()["error"]["code"] == "body_too_large"


@pytest.mark.anyio
async def test_a_key_over_its_rate_is_429_with_retry_after_and_others_are_not():
    async with await client(app(rate=0.5, burst=2)) as http:
        statuses = [(await http.post("/v1/things", headers={"X-OM-Api-Key": "om_a"})).status_code for _ in range(2)]
        refused = await http.post("/v1/things", headers={"Authorization": "Bearer om_a"})  # the same key as Bearer
        other = await http.post("/v1/things", headers={"Authorization": "Bearer om_b"})
        keyless = [(await http.post("/v1/things")).status_code for _ in range(3)]
    assert statuses == [200, 200]
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "2"
    assert refused.json()["error"]["code"] == "rate_limited" and "API_RATE_LIMIT_PER_S" in refused.json()["error"]["message"]
    assert other.status_code == 200
    assert keyless == [200, 200, 200]
