"""ClickHouse's HTTP interface (port 8123 protocol) in front of the embedded engine.

A raw ASGI app, so the request body can be streamed into the engine as it arrives and the
response headers can wait until the first result block is known to be good. Blocking engine
calls run in a thread pool; see engine.py for how connections, sessions and per-request settings
map onto chdb.
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import secrets
import socket
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson
from prometheus_client import Counter, Gauge, Histogram
from starlette.requests import Request

from deploy.clickhouse_http.codecs import Decoder, choose_encoding, compressor
from deploy.clickhouse_http.engine import ClickHouseError, Engine, Lease
from deploy.clickhouse_http.sqltext import describe, output_format, split_insert
from openmonetize import logs, metrics

log = logs.get_logger(__name__)

REQUESTS = Counter("clickhouse_http_requests_total", "HTTP requests served", ["handler", "status"])
ERRORS = Counter("clickhouse_http_errors_total", "Queries that failed, by ClickHouse error", ["code", "name"])
INSERTED_ROWS = Counter("clickhouse_http_inserted_rows_total", "Rows written by INSERT ... FORMAT requests")
DURATION = Histogram(
    "clickhouse_http_query_duration_seconds",
    "Query request time, body upload included",
    ["kind"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
SESSIONS = Gauge("clickhouse_http_sessions", "Open HTTP sessions (one engine connection each)")

# URL parameters of the HTTP interface itself; every other one (but param_*) is a setting.
_HTTP_PARAMS = frozenset({
    "query", "database", "default_format", "session_id", "session_timeout", "session_check", "close_session",
    "query_id", "user", "password", "quota_key", "role", "stacktrace", "buffer_size", "wait_end_of_query",
    "client_protocol_version", "compress", "decompress",
})
# Settings that only steer the HTTP layer; they are consumed here, not passed to the engine.
_HTTP_SETTINGS = frozenset({
    "enable_http_compression", "http_zlib_compression_level", "send_progress_in_http_headers",
    "http_headers_progress_interval_ms", "cancel_http_readonly_queries_on_client_close", "readonly",
    "add_http_cors_header", "http_response_buffer_size", "http_wait_end_of_query",
})
# Output formats whose per-block chunks concatenate into one valid result (no prefix/suffix).
_STREAMABLE = frozenset({
    "native", "rowbinary", "tabseparated", "tsv", "tabseparatedraw", "tsvraw", "csv", "jsoneachrow",
    "jsonlines", "ndjson", "jsoncompacteachrow", "jsonstringseachrow", "values", "tskv",
})
_MAX_QUERY_SIZE = 256 * 1024  # enough of the body to hold any INSERT's head (ClickHouse's max_query_size)
_INSERT_BATCH = 1024 * 1024
_DEFAULT_SESSION_TIMEOUT = 60.0


def _content_type(fmt: str) -> str:
    f = fmt.lower()
    if f.startswith(("tabseparated", "tsv")):
        return "text/tab-separated-values; charset=UTF-8"
    if f.startswith("csv"):
        return f"text/csv; charset=UTF-8; header={'present' if 'withnames' in f else 'absent'}"
    if f.startswith("json") and "eachrow" in f or f in ("jsonlines", "ndjson"):
        return "application/x-ndjson; charset=UTF-8"
    if f.startswith("json"):
        return "application/json; charset=UTF-8"
    if f.startswith(("native", "rowbinary", "parquet", "arrow", "orc", "avro", "protobuf", "msgpack", "capnproto")):
        return "application/octet-stream"
    if f == "xml":
        return "application/xml; charset=UTF-8"
    return "text/plain; charset=UTF-8"


def _summary(**counts: float) -> str:
    keys = ("read_rows", "read_bytes", "written_rows", "written_bytes", "total_rows_to_read",
            "result_rows", "result_bytes", "elapsed_ns")
    return orjson.dumps({k: str(int(counts.get(k, 0))) for k in keys}).decode()


@dataclass
class _Params:
    """One request's URL parameters (and multipart fields), sorted by what they steer."""

    query: str = ""
    database: str | None = None
    default_format: str = "TabSeparated"
    session_id: str | None = None
    session_timeout: float = _DEFAULT_SESSION_TIMEOUT
    session_check: bool = False
    close_session: bool = False
    query_id: str = ""
    wait_end_of_query: bool = False
    compression: bool = False
    zlib_level: int = 3
    readonly: bool = False
    bound: dict[str, str] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, items: list[tuple[str, str]], method: str) -> _Params:
        values = dict(items)
        p = cls(readonly=method in ("GET", "HEAD"))
        try:
            p.session_timeout = float(values.get("session_timeout", _DEFAULT_SESSION_TIMEOUT))
            p.zlib_level = int(values.get("http_zlib_compression_level", 3))
        except ValueError as exc:
            raise ClickHouseError(36, f"Invalid HTTP parameter: {exc}.", "BAD_ARGUMENTS") from None
        for name in ("compress", "decompress"):
            if values.get(name, "0") not in ("", "0"):
                raise ClickHouseError(
                    48, f"Parameter {name}=1 (ClickHouse block compression) is not supported here.", "NOT_IMPLEMENTED"
                )
        p.query = values.get("query", "")
        p.database = values.get("database") or None
        p.default_format = values.get("default_format") or p.default_format
        p.session_id = values.get("session_id") or None
        p.session_check = values.get("session_check") == "1"
        p.close_session = values.get("close_session") == "1"
        p.query_id = values.get("query_id") or str(uuid.uuid4())
        p.wait_end_of_query = values.get("wait_end_of_query") == "1"
        p.compression = values.get("enable_http_compression") == "1"
        p.readonly = p.readonly or values.get("readonly", "0") not in ("", "0")
        for name, value in values.items():
            if name.startswith("param_"):
                p.bound[name[6:]] = value
            elif name not in _HTTP_PARAMS and name not in _HTTP_SETTINGS:
                p.settings[name] = value
        return p


class _Body:
    """The request body, decompressed as it is received."""

    def __init__(self, receive: Callable, encoding: str | None) -> None:
        self._receive = receive
        self._decoder = Decoder(encoding)
        self.done = False
        self.received = 0

    async def read(self) -> bytes | None:
        """The next decoded chunk; None at the end of the body."""
        while not self.done:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise ClickHouseError(210, "Client closed the connection while sending the request.", "NETWORK_ERROR")
            raw = message.get("body", b"")
            self.received += len(raw)
            self.done = not message.get("more_body", False)
            data = self._decoder.feed(raw)
            if self.done:
                self._decoder.finish()
            if data:
                return data
        return None

    async def read_all(self) -> bytes:
        chunks = []
        while (chunk := await self.read()) is not None:
            chunks.append(chunk)
        return b"".join(chunks)

    async def wait_disconnect(self) -> None:
        """Returns when the client goes away (call once the body has been read)."""
        while (await self._receive())["type"] != "http.disconnect":
            pass

    async def drain(self) -> None:
        """Discard what the client still sends, so it reads our answer instead of a broken pipe."""
        while not self.done:
            message = await self._receive()
            self.done = message["type"] == "http.disconnect" or not message.get("more_body", False)


class _Reply:
    def __init__(self, status: int = 200, headers: dict[str, str] | None = None, body: bytes = b"") -> None:
        self.status, self.headers, self.body = status, headers or {}, body

    async def send(self, send: Callable) -> None:
        headers = [(k.lower().encode(), v.encode()) for k, v in self.headers.items()]
        headers.append((b"content-length", str(len(self.body)).encode()))
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


class ClickHouseHTTP:
    """The ASGI application."""

    def __init__(self, engine: Engine, workers: int = 16) -> None:
        self.engine = engine
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="chdb")
        self._display_name = socket.gethostname()
        SESSIONS.set_function(lambda: engine.session_count)

    async def _run(self, fn: Callable, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _headers(self, query_id: str, **extra: str) -> dict[str, str]:
        return {
            "X-ClickHouse-Server-Display-Name": self._display_name,
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Timezone": self.engine.timezone,
            **extra,
        }

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        path = scope["path"]
        if path in ("/ping", "/replicas_status") or (path == "/" and "query" not in request.query_params
                                                     and scope["method"] in ("GET", "HEAD")):
            await _Reply(200, {"Content-Type": "text/html; charset=UTF-8"}, b"Ok.\n").send(send)
            REQUESTS.labels("ping", "200").inc()
        elif path == "/metrics":
            body, content_type = metrics.render()
            await _Reply(200, {"Content-Type": content_type}, body).send(send)
            REQUESTS.labels("metrics", "200").inc()
        elif path == "/":
            await self._query(request, receive, send)
        else:
            body = f"There is no handle {path}\n\nUse / or /ping for health checks.\n".encode()
            await _Reply(404, {"Content-Type": "text/plain; charset=UTF-8"}, body).send(send)
            REQUESTS.labels("other", "404").inc()

    async def _lifespan(self, receive: Callable, send: Callable) -> None:
        reaper = None
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                reaper = asyncio.create_task(self._expire_sessions())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if reaper:
                    reaper.cancel()
                self._executor.shutdown(wait=True)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _expire_sessions(self) -> None:
        while True:
            await asyncio.sleep(5)
            await self._run(self.engine.expire_sessions)

    async def _query(self, request: Request, receive: Callable, send: Callable) -> None:
        started = time.perf_counter()
        params, kind, stats = None, "unknown", {}
        body = _Body(receive, request.headers.get("content-encoding"))
        try:
            params = _Params.parse(request.query_params.multi_items(), request.method)
            if request.headers.get("content-type", "").startswith("multipart/form-data"):
                params = _Params.parse(
                    request.query_params.multi_items() + _form_fields(request.headers["content-type"],
                                                                      await body.read_all()),
                    request.method,
                )
            kind, stats = await self._execute(params, request, body, send)
            status = 200
        except ClickHouseError as err:
            status = err.http_status
            await body.drain()
            await self._send_error(err, params, send)
            ERRORS.labels(str(err.code), err.name).inc()
            log.warning("query_failed", code=err.code, error=err.name, message=err.text[:1000],
                        query=(params.query if params else "")[:1000], query_id=params.query_id if params else None)
        elapsed = time.perf_counter() - started
        DURATION.labels(kind).observe(elapsed)
        REQUESTS.labels("query", str(status)).inc()
        log.debug("request", method=request.method, kind=kind, status=status, elapsed_ms=round(elapsed * 1000, 2),
                  received_bytes=body.received, query_id=params.query_id if params else None,
                  session_id=params.session_id if params else None, **stats)

    async def _send_error(self, err: ClickHouseError, params: _Params | None, send: Callable) -> None:
        query_id = params.query_id if params else str(uuid.uuid4())
        headers = self._headers(query_id, **{"Content-Type": "text/plain; charset=UTF-8",
                                             "X-ClickHouse-Exception-Code": str(err.code)})
        await _Reply(err.http_status, headers, err.body(self.engine.version)).send(send)

    async def _execute(self, params: _Params, request: Request, body: _Body, send: Callable) -> tuple[str, dict]:
        """Run the request's statement and answer it; returns (kind, stats) for logs and metrics."""
        head = bytearray(params.query.encode() + b"\n" if params.query else b"")
        while len(head) < _MAX_QUERY_SIZE and (chunk := await body.read()) is not None:
            head += chunk
        # latin-1 maps bytes 1:1 to characters, so offsets found in the text are byte offsets.
        split = split_insert(head.decode("latin-1"))
        query, statement = "", None
        if split is None:
            query = (bytes(head) + await body.read_all()).decode("utf-8", errors="replace")
            statement = describe(query)
            if statement.count == 0:
                raise ClickHouseError(62, "Empty query.", "SYNTAX_ERROR")
            if statement.count > 1:
                raise ClickHouseError(62, "Multi-statements are not allowed.", "SYNTAX_ERROR")
        # GET (or readonly=N) may read and change settings, like readonly=2 on a server.
        if params.readonly and (statement is None or not (statement.read_only or statement.keyword in ("SET", "USE"))):
            raise ClickHouseError(
                164,
                "Cannot execute query in readonly mode. For queries over HTTP, method GET implies readonly. "
                "You should use method POST for modifying queries.",
                "READONLY",
            )

        lease = await self._run(self.engine.lease, params.session_id, params.session_timeout, params.session_check)
        released = False

        async def release() -> None:
            nonlocal released
            released = True
            await self._run(lease.release, params.close_session)

        try:
            await self._run(lease.apply, params.database, params.settings)
            if split is not None:
                statement_text = bytes(head[: len(split.statement)]).decode("utf-8", errors="replace")
                data = bytes(head[split.data_start :])
                kind, (reply, stats) = "insert", await self._insert(lease, statement_text, split.fmt, data, body, params)
            else:
                assert statement is not None
                if not statement.keeps_session_state:
                    lease.forget_session_state()
                kind = "select" if statement.read_only else "command"
                fmt = output_format(query, self.engine.output_formats) or params.default_format
                encoding = choose_encoding(request.headers.get("accept-encoding")) if params.compression else None
                if statement.read_only and not params.wait_end_of_query and fmt.lower() in _STREAMABLE:
                    return kind, await self._stream(lease, release, query, fmt, params, encoding, body, send)
                reply, stats = await self._select(lease, query, fmt, params, statement.read_only, encoding)
            # Release before answering: the client may reuse its session as soon as it has the answer.
            await release()
        except BaseException:
            if not released:
                self._executor.submit(lease.release, True)
            raise
        await reply.send(send)
        return kind, stats

    async def _insert(self, lease: Lease, statement: str, fmt: str, data: bytes, body: _Body,
                      params: _Params) -> tuple[_Reply, dict]:
        inserter = await self._run(lease.call, lease.conn.send_insert, statement, fmt)
        try:
            batch = bytearray(data)
            while (chunk := await body.read()) is not None:
                batch += chunk
                if len(batch) >= _INSERT_BATCH:
                    await self._run(lease.call, inserter.append, bytes(batch))
                    batch.clear()
            if batch:
                await self._run(lease.call, inserter.append, bytes(batch))
            result = await self._run(lease.call, inserter.finish)
        except BaseException:
            self._executor.submit(lease.call, inserter.cancel)
            raise
        INSERTED_ROWS.inc(result.rows_written)
        summary = _summary(read_rows=result.rows_written, read_bytes=result.bytes_written,
                           written_rows=result.rows_written, written_bytes=result.bytes_written,
                           elapsed_ns=result.elapsed * 1e9)
        headers = self._headers(params.query_id, **{"Content-Type": "text/plain; charset=UTF-8",
                                                    "X-ClickHouse-Summary": summary})
        return _Reply(200, headers), {"written_rows": result.rows_written}

    async def _select(self, lease: Lease, query: str, fmt: str, params: _Params, read_only: bool,
                      encoding: str | None) -> tuple[_Reply, dict]:
        result = await self._run(lease.call, lease.conn.query, query, fmt, params.bound)
        data = result.bytes()
        summary = _summary(read_rows=result.storage_rows_read(), read_bytes=result.storage_bytes_read(),
                           written_rows=result.rows_written(), written_bytes=result.bytes_written(),
                           result_rows=result.rows_read(), result_bytes=len(data), elapsed_ns=result.elapsed() * 1e9)
        headers = self._headers(params.query_id, **{"Content-Type": _content_type(fmt), "X-ClickHouse-Summary": summary})
        if read_only:
            headers["X-ClickHouse-Format"] = fmt
        if encoding and data:
            comp = compressor(encoding, params.zlib_level)
            data = comp.compress(data) + comp.flush()
            headers["Content-Encoding"] = encoding
        return _Reply(200, headers, data), {"result_rows": result.rows_read()}

    async def _stream(self, lease: Lease, release: Callable, query: str, fmt: str, params: _Params,
                      encoding: str | None, body: _Body, send: Callable) -> dict:
        """Send result blocks as the engine produces them (no wait_end_of_query).

        Headers go out once the first block is known to be good. An error after that is written
        into the body between exception markers (X-ClickHouse-Exception-Tag), as ClickHouse 25.11+
        does; clients that know the tag report it as a server error.
        """
        stream = await self._run(lease.call, lease.conn.send_query, query, fmt, params.bound)
        try:
            chunk = await self._run(lease.call, _next_block, stream)
        except BaseException:
            self._executor.submit(lease.call, stream.cancel)
            raise
        tag = secrets.token_hex(8)
        headers = self._headers(params.query_id, **{"Content-Type": _content_type(fmt), "X-ClickHouse-Format": fmt,
                                                    "X-ClickHouse-Exception-Tag": tag})
        comp = None
        if encoding:
            comp = compressor(encoding, params.zlib_level)
            headers["Content-Encoding"] = encoding
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]})
        disconnected = asyncio.ensure_future(body.wait_disconnect())
        blocks, tail = 0, b""
        try:
            while chunk is not None and not disconnected.done():
                blocks += 1
                await send({"type": "http.response.body", "body": comp.compress(chunk) if comp else chunk,
                            "more_body": True})
                chunk = await self._run(lease.call, _next_block, stream)
        except ClickHouseError as err:
            message = f"{err} (version {self.engine.version})".encode()
            tail = (b"__exception__\r\n" + tag.encode() + b"\r\n" + message + b"\n"
                    + f"{len(message)} {tag}".encode() + b"\r\n__exception__\r\n")
            ERRORS.labels(str(err.code), err.name).inc()
            log.warning("query_failed_midstream", code=err.code, error=err.name, message=err.text[:1000],
                        query=query[:1000], query_id=params.query_id)
        finally:
            disconnected.cancel()
            await self._run(lease.call, stream.cancel)
        await release()
        if comp:
            tail = comp.compress(tail) + comp.flush()
        await send({"type": "http.response.body", "body": tail})
        return {"streamed_blocks": blocks}


def _next_block(stream: Any) -> bytes | None:
    result = stream.fetch()
    return None if result is None else result.bytes()


def _form_fields(content_type: str, body: bytes) -> list[tuple[str, str]]:
    """`query` and `param_*` fields of a multipart/form-data body (clickhouse-connect sends long
    bound parameters this way). File parts would be external tables, which we don't support."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    fields = []
    for part in message.iter_parts():
        if part.get_filename():
            raise ClickHouseError(48, "External data (file parts in multipart/form-data) is not supported.",
                                  "NOT_IMPLEMENTED")
        name = part.get_param("name", header="content-disposition")
        fields.append((str(name), part.get_payload(decode=True).decode()))
    return fields
