"""The API's one ClickHouse client (CLICKHOUSE_URL, CLICKHOUSE_DATABASE), for the reports.

The reports only read: the client connects as the read-only reporting user
(CLICKHOUSE_READER_USER, openmonetize/clickhouse_client.py).

clickhouse-connect's async client (aiohttp) queries without tying up a thread. It is created on
first use, not at start-up, so the API starts and serves everything else while ClickHouse is
down; any ClickHouse failure (unreachable, a server error) becomes a 503 `reports_unavailable`
for the caller, with the details in the log, never a 500.
"""

from __future__ import annotations

import asyncio
import re

from clickhouse_connect.driver.asyncclient import AsyncClient
from clickhouse_connect.driver.exceptions import ClickHouseError
from clickhouse_connect.driver.query import QueryResult

from api.errors import ApiError
from openmonetize import clickhouse_client
from openmonetize.logs import get_logger
from openmonetize.settings import Settings

log = get_logger(__name__)
CONNECT_TIMEOUT_S = 2
RECEIVE_TIMEOUT_S = 30
# Applied to every report query: a report that scans too much is stopped, not left running.
QUERY_SETTINGS = {"max_execution_time": RECEIVE_TIMEOUT_S}


class ClickHouse:
    def __init__(self, settings: Settings):
        database = settings.clickhouse_database
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", database):
            raise ValueError(f"CLICKHOUSE_DATABASE {database!r} is not a plain identifier")
        self.settings = settings
        self.database = database  # spliced into SQL text as an identifier: checked above
        self.retry_after_s = settings.ingest_retry_after_s
        self._client: AsyncClient | None = None
        self._connecting = asyncio.Lock()

    async def query(self, sql: str, parameters: dict, settings: dict | None = None) -> QueryResult:
        """`sql` with server-side `{name:Type}` parameters, or ApiError 503."""
        try:
            client = await self._connected()
            return await client.query(sql, parameters=parameters, settings={**QUERY_SETTINGS, **(settings or {})})
        except ClickHouseError as exc:
            log.warning("clickhouse_query_failed", error=str(exc)[:500])
            raise ApiError(
                503, "reports_unavailable", f"ClickHouse does not answer ({type(exc).__name__}); retry later",
                headers={"Retry-After": str(self.retry_after_s)},
            ) from exc

    async def _connected(self) -> AsyncClient:
        async with self._connecting:
            if self._client is None:
                self._client = await clickhouse_client.get_async_client(
                    self.settings, "reader", connect_timeout=CONNECT_TIMEOUT_S, send_receive_timeout=RECEIVE_TIMEOUT_S,
                )
            return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
