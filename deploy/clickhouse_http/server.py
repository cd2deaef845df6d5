"""ClickHouse's HTTP interface (the port 8123 protocol) in front of the embedded engine.

A raw ASGI app, so that an INSERT's body streams into the engine as it arrives (decompressed on
the way) and a response's headers wait until the first result block is known to be good.
Blocking engine calls run in a thread pool; engine.py explains how connections, sessions and
per-request settings map onto chdb.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from starlette.requests import Request

from deploy.clickhouse_http import access, blocks
from deploy.clickhouse_http.access import User, Users
from deploy.clickhouse_http.codecs import choose_encoding
from deploy.clickhouse_http.engine import ClickHouseError, Engine, Lease
from deploy.clickhouse_http.engine import _errors as _engine_errors
from deploy.clickhouse_http.protocol import (
    Body,
    Params,
    Reply,
    ResponseEncoder,
    asgi_headers,
    content_type,
    exception_block,
    form_fields,
    header_params,
    summary,
)
from deploy.clickhouse_http.sqltext import Statement, describe, output_format, split_insert, strip_format
from openmonetize import logs, metrics

log = logs.get_logger(__name__)

REQUESTS = Counter("openmonetize_clickhouse_http_requests_total", "HTTP requests served", ["handler", "status"])
ERRORS = Counter("openmonetize_clickhouse_http_errors_total", "Queries that failed, by ClickHouse error", ["code", "name"])
INSERTED_ROWS = Counter("openmonetize_clickhouse_http_inserted_rows_total", "Rows written by INSERT ... FORMAT requests")
DURATION = Histogram(
    "openmonetize_clickhouse_http_query_duration_seconds",
    "Query request time, body upload included",
    ["kind"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
COMPRESSED_BLOCKS = Counter(
    "openmonetize_clickhouse_http_compressed_blocks_total",
    "ClickHouse compressed blocks read from requests (decompress=1) and written to responses (compress=1)",
    ["direction"],
)
SESSIONS = Gauge("openmonetize_clickhouse_http_sessions", "Open HTTP sessions (one engine connection each)")

# Output formats whose per-block chunks concatenate into one valid result (no prefix/suffix).
_STREAMABLE = frozenset({
    "native", "rowbinary", "tabseparated", "tsv", "tabseparatedraw", "tsvraw", "csv", "jsoneachrow",
    "jsonlines", "ndjson", "jsoncompacteachrow", "jsonstringseachrow", "values", "tskv",
})
_MAX_QUERY_SIZE = 256 * 1024  # body read before deciding it is an INSERT's data (ClickHouse's max_query_size)
_INSERT_BATCH = 1024 * 1024  # bytes handed to the engine per call


def _readonly() -> ClickHouseError:
    return ClickHouseError(
        164,
        "Cannot execute query in readonly mode. For queries over HTTP, method GET implies readonly. "
        "You should use method POST for modifying queries.",
        "READONLY",
    )


class ClickHouseHTTP:
    """The ASGI application."""

    def __init__(self, engine: Engine, users: Users, workers: int = 16) -> None:
        self.engine = engine
        self.users = users
        self._denied = access.denied_functions(engine.table_functions, engine.table_engines)
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
        if path in ("/ping", "/replicas_status") or (
            path == "/" and "query" not in request.query_params and request.method in ("GET", "HEAD")
        ):
            await Reply(200, {"Content-Type": "text/html; charset=UTF-8"}, b"Ok.\n").send(send)
            REQUESTS.labels("ping", "200").inc()
        elif path == "/metrics":
            body, metrics_type = metrics.render()
            await Reply(200, {"Content-Type": metrics_type}, body).send(send)
            REQUESTS.labels("metrics", "200").inc()
        elif path == "/":
            await self._query(request, receive, send)
        else:
            body = f"There is no handle {path}\n\nUse / or /ping for health checks.\n".encode()
            await Reply(404, {"Content-Type": "text/plain; charset=UTF-8"}, body).send(send)
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
        """Answer one query request, log it and count it."""
        started = time.perf_counter()
        params: Params | None = None
        stats: dict[str, Any] = {"kind": "unknown"}
        body = Body(receive, request.headers.get("content-encoding"))
        try:
            user = self.users.authenticate(request.headers, request.query_params)
            stats["user"] = user.name
            given = header_params(request.headers) + request.query_params.multi_items()
            params = Params.parse(given, request.method)
            if params.decompress:
                body.unframe(params.verify_checksums)
            if request.headers.get("content-type", "").startswith("multipart/form-data"):
                fields = form_fields(request.headers["content-type"], await body.read_all())
                params = Params.parse(given + fields, request.method)
            await self._execute(user, params, request, body, send, stats)
            status = 200
        except ClickHouseError as err:
            status = err.http_status
            await body.drain()
            query_id = params.query_id if params else str(uuid.uuid4())
            headers = self._headers(query_id, **{"Content-Type": "text/plain; charset=UTF-8",
                                                 "X-ClickHouse-Exception-Code": str(err.code)})
            text = err.body(self.engine.version)
            # A server writes the error into the compressed stream it opened for the answer; the Java
            # client reads 401 and 403 answers as plain text, so those stay plain.
            if params is not None and params.compress and status not in (401, 403):
                framing = blocks.Encoder()
                text = framing.compress(text)
                stats["response_blocks"] = framing.blocks
            await Reply(status, headers, text).send(send)
            ERRORS.labels(str(err.code), err.name).inc()
            log.warning("query_failed", code=err.code, error=err.name, message=err.text[:2000],
                        query=stats.get("query"), query_id=query_id)
        elapsed = time.perf_counter() - started
        DURATION.labels(stats["kind"]).observe(elapsed)
        REQUESTS.labels("query", str(status)).inc()
        if body.blocks:
            stats["request_blocks"] = body.blocks
            COMPRESSED_BLOCKS.labels("request").inc(body.blocks)
        if stats.get("response_blocks"):
            COMPRESSED_BLOCKS.labels("response").inc(stats["response_blocks"])
        log.debug("request", method=request.method, status=status, elapsed_ms=round(elapsed * 1000, 2),
                  received_bytes=body.received, query_id=params.query_id if params else None,
                  session_id=params.session_id if params else None, **stats)

    async def _execute(self, user: User, params: Params, request: Request, body: Body, send: Callable,
                       stats: dict) -> None:
        """Run the request's statement as `user` and answer it, filling `stats` for the request log."""
        # ClickHouse reads `query` parameter + newline + body as one text: an INSERT's data may follow.
        head = bytearray(params.query.encode() + b"\n" if params.query else b"")
        while len(head) < _MAX_QUERY_SIZE and (chunk := await body.read()) is not None:
            head += chunk
        # latin-1 maps bytes 1:1 to characters, so offsets found in the text are byte offsets.
        split = split_insert(head.decode("latin-1"))
        query, statement = "", None
        if split is None:
            query = (bytes(head) + await body.read_all()).decode("utf-8", errors="replace")
            stats.update(query=query[:2000])
            statement = _check(describe(query), params.readonly)
            access.check_statement(user, statement, query)
        else:
            insert = bytes(head[: len(split.statement)]).decode("utf-8", errors="replace")
            stats.update(kind="insert", query=f"{insert}FORMAT {split.fmt}")
            if params.readonly:
                raise _readonly()
            access.check_statement(user, Statement("INSERT", 1), insert)
        access.check_settings(user, params.settings)

        # A read-only user's request gets a connection of its own: what its statement reads is
        # checked on that connection, with no session state (USE, SET) to make it read elsewhere.
        session_id = None if user.readonly else params.session_id
        lease = await self._run(self.engine.lease, session_id, params.session_timeout, params.session_check,
                                user.name, _setup(user))
        released = False

        async def release() -> None:
            nonlocal released
            released = True
            await self._run(lease.release, params.close_session)

        try:
            text = f"{insert} FORMAT {split.fmt}" if split is not None else query
            if user.readonly:  # on its own connection, before the request's settings (limits) apply
                await self._run(lease.apply, params.database, {})
                await self._run(lease.call, self._inspect, lease.conn, user, text, statement, params.bound)
                await self._run(lease.apply, None, params.settings)
            else:  # a fresh connection: the session's settings (max_result_rows, ...) must not apply
                await self._run(self._inspect_apart, user, text, statement, params.bound)
                await self._run(lease.apply, params.database, params.settings)
            if split is not None:
                data = bytes(head[split.data_start :])
                reply = await self._insert(lease, insert, split.fmt, data, body, params, stats)
            else:
                assert statement is not None
                if not statement.keeps_session_state:
                    lease.forget_session_state()
                stats["kind"] = "select" if statement.read_only else "command"
                fmt = output_format(query, self.engine.output_formats) or params.default_format
                encoding = choose_encoding(request.headers.get("accept-encoding")) if params.compression else None
                encoder = ResponseEncoder(params.compress, encoding, params.zlib_level)
                # chdb streams SELECTs only ("Streaming query is not supported" for SHOW, DESCRIBE, EXISTS).
                if statement.keyword in ("SELECT", "WITH") and not params.wait_end_of_query and fmt.lower() in _STREAMABLE:
                    await self._stream(lease, release, query, fmt, params, encoder, body, send, stats)
                    return
                reply = await self._select(lease, query, fmt, params, statement.read_only, encoder, stats)
            # Release before answering: the client may reuse its session as soon as it has the answer.
            await release()
        except ClickHouseError:
            if not released:
                await release()
            raise
        except BaseException:  # cancelled: don't await, and don't trust the session's state
            if not released:
                self._executor.submit(lease.release, True)
            raise
        await reply.send(send)

    def _inspect_apart(self, user: User, text: str, statement: Statement | None, bound: dict) -> None:
        conn = self.engine.connect()
        try:
            with _engine_errors():
                self._inspect(conn, user, text, statement, bound)
        finally:
            conn.close()

    def _inspect(self, conn: Any, user: User, text: str, statement: Statement | None, bound: dict) -> None:
        """The checks made on the engine's own parse of the statement (see access.py)."""
        if statement is not None:  # an INSERT's FORMAT names its data's: that stays
            text = strip_format(text, self.engine.output_formats)
        ast = conn.query(f"EXPLAIN AST {text}", "TabSeparatedRaw", bound).bytes().decode("utf-8", "replace")
        access.check_ast(user, ast, self._denied)
        if user.readonly and statement is not None and statement.keyword in ("SELECT", "WITH"):
            tree = conn.query(f"EXPLAIN QUERY TREE {text}", "TabSeparatedRaw", bound)
            access.check_tree(user, tree.bytes().decode("utf-8", "replace"))

    async def _abort(self, lease: Lease, cancel: Callable, exc: BaseException) -> None:
        """Cancel a half-done statement: awaited after a query error, so it is done before the lease
        is released; merely queued when the request itself was cancelled (the lease is then
        released with its session closed, so the order no longer matters)."""
        if isinstance(exc, ClickHouseError):
            with contextlib.suppress(ClickHouseError):
                await self._run(lease.call, cancel)
        else:
            self._executor.submit(lease.call, cancel)

    async def _insert(self, lease: Lease, statement: str, fmt: str, data: bytes, body: Body, params: Params,
                      stats: dict) -> Reply:
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
        except BaseException as exc:
            await self._abort(lease, inserter.cancel, exc)
            raise
        INSERTED_ROWS.inc(result.rows_written)
        stats["written_rows"] = result.rows_written
        header = summary(read_rows=result.rows_written, read_bytes=result.bytes_written,
                         written_rows=result.rows_written, written_bytes=result.bytes_written,
                         elapsed_ns=result.elapsed * 1e9)
        return Reply(200, self._headers(params.query_id, **{"Content-Type": "text/plain; charset=UTF-8",
                                                            "X-ClickHouse-Summary": header}))

    async def _select(self, lease: Lease, query: str, fmt: str, params: Params, read_only: bool,
                      encoder: ResponseEncoder, stats: dict) -> Reply:
        """Run a statement to completion and answer with its whole result (wait_end_of_query)."""
        result = await self._run(lease.call, lease.conn.query, query, fmt, params.bound)
        data = result.bytes()
        stats["result_rows"] = result.rows_read()
        header = summary(read_rows=result.storage_rows_read(), read_bytes=result.storage_bytes_read(),
                         written_rows=result.rows_written(), written_bytes=result.bytes_written(),
                         result_rows=result.rows_read(), result_bytes=len(data), elapsed_ns=result.elapsed() * 1e9)
        headers = self._headers(params.query_id, **{"Content-Type": content_type(fmt), "X-ClickHouse-Summary": header})
        if read_only:  # a result set, even if empty: tells clickhouse-connect's command() to return ""
            headers["X-ClickHouse-Format"] = fmt
        if encoder and data:
            data = encoder.compress(data) + encoder.flush()
            if encoder.encoding:
                headers["Content-Encoding"] = encoder.encoding
            stats["response_blocks"] = encoder.blocks
        return Reply(200, headers, data)

    async def _stream(self, lease: Lease, release: Callable, query: str, fmt: str, params: Params,
                      encoder: ResponseEncoder, body: Body, send: Callable, stats: dict) -> None:
        """Send result blocks as the engine produces them. An error after the headers went out is
        written into the body between exception markers, as ClickHouse does."""
        started = time.perf_counter()
        stream = await self._run(lease.call, lease.conn.send_query, query, fmt, params.bound)
        try:
            first = await self._run(lease.call, stream.fetch)
        except BaseException as exc:
            await self._abort(lease, stream.cancel, exc)
            raise
        chunk = None if first is None else first.bytes()
        tag = secrets.token_hex(8)
        # What is known when the headers go: the first block (a server sends its progress so far).
        progress = {} if first is None else {
            "read_rows": first.storage_rows_read(), "read_bytes": first.storage_bytes_read(),
            "result_rows": first.rows_read(), "result_bytes": len(chunk or b""),
        }
        headers = self._headers(params.query_id, **{
            "Content-Type": content_type(fmt), "X-ClickHouse-Format": fmt, "X-ClickHouse-Exception-Tag": tag,
            "X-ClickHouse-Summary": summary(**progress, elapsed_ns=(time.perf_counter() - started) * 1e9),
        })
        if encoder.encoding:
            headers["Content-Encoding"] = encoder.encoding
        await send({"type": "http.response.start", "status": 200, "headers": asgi_headers(headers)})
        disconnected = asyncio.ensure_future(body.wait_disconnect())
        sent, tail = 0, b""
        try:
            while chunk is not None and not disconnected.done():
                sent += 1
                await send({"type": "http.response.body", "body": encoder.compress(chunk),
                            "more_body": True})
                chunk = await self._run(lease.call, _next_block, stream)
        except ClickHouseError as err:
            tail = exception_block(err.body(self.engine.version).rstrip(b"\n"), tag)
            ERRORS.labels(str(err.code), err.name).inc()
            log.warning("query_failed_midstream", code=err.code, error=err.name, message=err.text[:2000],
                        query=query[:2000], query_id=params.query_id)
        finally:
            disconnected.cancel()
            with contextlib.suppress(ClickHouseError):  # the response has started: nothing left to report to
                await self._run(lease.call, stream.cancel)
        stats["streamed_blocks"] = sent
        if encoder.blocks:
            stats["response_blocks"] = encoder.blocks
        await release()
        tail = encoder.compress(tail) + encoder.flush()
        await send({"type": "http.response.body", "body": tail})


def _check(statement: Statement, readonly: bool) -> Statement:
    """Refuse what the HTTP interface refuses before anything runs."""
    if statement.count == 0:
        raise ClickHouseError(62, "Empty query.", "SYNTAX_ERROR")
    if statement.count > 1:
        raise ClickHouseError(62, "Multi-statements are not allowed.", "SYNTAX_ERROR")
    # GET may read and change settings, like readonly=2 on a server.
    if readonly and not (statement.read_only or statement.keyword in ("SET", "USE")):
        raise _readonly()
    return statement


def _setup(user: User) -> tuple[str, ...]:
    """Run on each new connection of the user: its default database, and for a read-only user the
    engine's own read-only mode, which no later SET or SETTINGS clause can lift."""
    setup = []
    if user.default_database:
        setup.append("USE `" + user.default_database.replace("\\", "\\\\").replace("`", "\\`") + "`")
    if user.readonly:
        setup.append("SET readonly = 2, allow_ddl = 0")
    return tuple(setup)


def _next_block(stream: Any) -> bytes | None:
    result = stream.fetch()
    return None if result is None else result.bytes()
