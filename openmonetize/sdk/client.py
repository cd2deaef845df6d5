"""The sync (`OpenMonetize`) and async (`AsyncOpenMonetize`) clients: one httpx connection pool
each, the API key on every request, and the retry loop (openmonetize.sdk.retries)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any, TypeVar

import httpx
import msgspec

from openmonetize.sdk import operations
from openmonetize.sdk.errors import APIConnectionError
from openmonetize.sdk.operations import Operation
from openmonetize.sdk.retries import RetryPolicy, retry_error, retry_response

T = TypeVar("T")
DEFAULT_URL = "http://127.0.0.1:18080"
USER_AGENT = "openmonetize-python/0.1"


class _Client:
    def __init__(self, api_key: str | None, customer_id: str, base_url: str | None,
                 retry: RetryPolicy | None):
        api_key = api_key or os.environ.get("OPENMONETIZE_API_KEY")
        if not api_key:
            raise ValueError("give api_key (or set OPENMONETIZE_API_KEY)")
        if not customer_id:
            raise ValueError("give customer_id: the tenant the API key belongs to")
        self.customer_id = customer_id
        self.base_url = (base_url or os.environ.get("OPENMONETIZE_API_URL") or DEFAULT_URL).rstrip("/")
        self.retry = retry or RetryPolicy()
        self.headers = {"X-OM-Api-Key": api_key, "User-Agent": USER_AGENT}
        self.events = operations.Events(self)
        self.entitlements = operations.Entitlements(self)
        self.rating = operations.Rating(self)
        self.credits = operations.Credits(self)
        self.burn_tables = operations.BurnTables(self)
        self.plans = operations.Plans(self)
        self.subscriptions = operations.Subscriptions(self)

    def __repr__(self) -> str:  # never the key
        return f"{type(self).__name__}(base_url={self.base_url!r}, customer_id={self.customer_id!r})"

    @staticmethod
    def _request_args(op: Operation) -> dict[str, Any]:
        args: dict[str, Any] = {"params": dict(op.params)}
        if op.body is not None:
            args["content"] = msgspec.json.encode(op.body)
            args["headers"] = {"Content-Type": "application/json"}
        if op.idempotency_key is not None:
            args.setdefault("headers", {})["Idempotency-Key"] = op.idempotency_key
        return args


class OpenMonetize(_Client):
    """Sync client. `timeout` is seconds (or an httpx.Timeout) per try; `retry` says how often
    and how patiently a request is tried again. Use as a context manager, or call close()."""

    def __init__(self, api_key: str | None = None, *, customer_id: str, base_url: str | None = None,
                 timeout: float | httpx.Timeout = 10.0, retry: RetryPolicy | None = None):
        super().__init__(api_key, customer_id, base_url, retry)
        self._http = httpx.Client(base_url=self.base_url, headers=self.headers, timeout=timeout)

    def _run(self, op: Operation[T]) -> T:
        args = self._request_args(op)
        retry = 0
        while True:
            try:
                response = self._http.request(op.method, op.path, **args)
            except httpx.TransportError as exc:
                if retry >= self.retry.max_retries or not retry_error(exc, op.repeatable):
                    raise APIConnectionError(f"{op.method} {op.path}: {type(exc).__name__}: {exc}") from exc
                time.sleep(self.retry.delay_s(retry, None))
            else:
                if retry >= self.retry.max_retries or not retry_response(response, op.repeatable):
                    return op.read(response)
                time.sleep(self.retry.delay_s(retry, response))
            retry += 1

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> OpenMonetize:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()


class AsyncOpenMonetize(_Client):
    """Async client: the same resources and methods, each returning an awaitable."""

    def __init__(self, api_key: str | None = None, *, customer_id: str, base_url: str | None = None,
                 timeout: float | httpx.Timeout = 10.0, retry: RetryPolicy | None = None):
        super().__init__(api_key, customer_id, base_url, retry)
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=self.headers, timeout=timeout)

    async def _run(self, op: Operation[T]) -> T:
        args = self._request_args(op)
        retry = 0
        while True:
            try:
                response = await self._http.request(op.method, op.path, **args)
            except httpx.TransportError as exc:
                if retry >= self.retry.max_retries or not retry_error(exc, op.repeatable):
                    raise APIConnectionError(f"{op.method} {op.path}: {type(exc).__name__}: {exc}") from exc
                await asyncio.sleep(self.retry.delay_s(retry, None))
            else:
                if retry >= self.retry.max_retries or not retry_response(response, op.repeatable):
                    return op.read(response)
                await asyncio.sleep(self.retry.delay_s(retry, response))
            retry += 1

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncOpenMonetize:
        return self

    async def __aexit__(self, *_exc) -> None:
        await self.aclose()
