"""Pieces of ClickHouse's HTTP protocol: URL parameters, request body, replies, headers."""

from __future__ import annotations

import email.parser
import email.policy
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from deploy.clickhouse_http import blocks
from deploy.clickhouse_http.codecs import Decoder, compressor
from deploy.clickhouse_http.engine import ClickHouseError

# URL parameters of the HTTP interface itself; every other one (but param_*) is a setting.
_HTTP_PARAMS = frozenset({
    "query", "database", "default_format", "session_id", "session_timeout", "session_check", "close_session",
    "query_id", "user", "password", "quota_key", "role", "stacktrace", "buffer_size", "wait_end_of_query",
    "client_protocol_version", "compress", "decompress",
})
# Settings that only steer the HTTP layer: consumed here, not passed to the engine.
_HTTP_SETTINGS = frozenset({
    "enable_http_compression", "http_zlib_compression_level", "send_progress_in_http_headers",
    "http_headers_progress_interval_ms", "cancel_http_readonly_queries_on_client_close", "readonly",
    "add_http_cors_header", "http_response_buffer_size", "http_wait_end_of_query",
    "http_native_compression_disable_checksumming_on_decompress",
})
DEFAULT_SESSION_TIMEOUT = 60.0


# Request headers clients send instead of URL parameters (JDBC, clickhouse-go, DBeaver); a URL
# parameter of the same name wins, as on a ClickHouse server.
HEADER_PARAMS = {"x-clickhouse-database": "database", "x-clickhouse-format": "default_format",
                 "x-clickhouse-query-id": "query_id"}


def header_params(headers) -> list[tuple[str, str]]:
    """The (parameter, value) pairs the X-ClickHouse-* request headers stand for."""
    return [(name, headers[header]) for header, name in HEADER_PARAMS.items() if headers.get(header)]


@dataclass
class Params:
    """One request's URL parameters (and multipart form fields), sorted by what they steer."""

    query: str = ""
    database: str | None = None
    default_format: str = "TabSeparated"
    session_id: str | None = None
    session_timeout: float = DEFAULT_SESSION_TIMEOUT
    session_check: bool = False
    close_session: bool = False
    query_id: str = ""
    wait_end_of_query: bool = False
    compression: bool = False  # enable_http_compression
    compress: bool = False  # compress=1: the response in ClickHouse's compressed blocks (blocks.py)
    decompress: bool = False  # decompress=1: the request body in them
    verify_checksums: bool = True  # not http_native_compression_disable_checksumming_on_decompress
    zlib_level: int = 3
    readonly: bool = False  # GET, or readonly=N: behaves like readonly=2
    bound: dict[str, str] = field(default_factory=dict)  # param_<name>: server-side {name:Type} values
    settings: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, items: list[tuple[str, str]], method: str) -> Params:
        values = dict(items)
        try:
            session_timeout = float(values.get("session_timeout", DEFAULT_SESSION_TIMEOUT))
            zlib_level = int(values.get("http_zlib_compression_level", 3))
        except ValueError as exc:
            raise ClickHouseError(36, f"Invalid HTTP parameter: {exc}.", "BAD_ARGUMENTS") from None
        p = cls(
            query=values.get("query", ""),
            database=values.get("database") or None,
            default_format=values.get("default_format") or cls.default_format,
            session_id=values.get("session_id") or None,
            session_timeout=session_timeout,
            session_check=values.get("session_check") == "1",
            close_session=values.get("close_session") == "1",
            query_id=values.get("query_id") or str(uuid.uuid4()),
            wait_end_of_query=values.get("wait_end_of_query") == "1",
            compression=values.get("enable_http_compression") == "1",
            compress=_flag(values.get("compress")),
            decompress=_flag(values.get("decompress")),
            verify_checksums=not _flag(values.get("http_native_compression_disable_checksumming_on_decompress")),
            zlib_level=zlib_level,
            readonly=method in ("GET", "HEAD") or values.get("readonly", "0") not in ("", "0"),
        )
        for name, value in values.items():
            if name.startswith("param_"):
                p.bound[name[len("param_"):]] = value
            elif name not in _HTTP_PARAMS and name not in _HTTP_SETTINGS:
                p.settings[name] = value
        return p


def _flag(value: str | None) -> bool:
    """A boolean parameter as ClickHouse reads it: 1/0 and true/false."""
    return (value or "0").strip().lower() not in ("", "0", "false")


def form_fields(content_type: str, body: bytes) -> list[tuple[str, str]]:
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
        name = str(part.get_param("name", header="content-disposition"))
        fields.append((name, part.get_payload(decode=True).decode()))
    return fields


class Body:
    """The request body, decompressed as it is received."""

    def __init__(self, receive: Callable, encoding: str | None) -> None:
        self._receive = receive
        self._decoder = Decoder(encoding)
        self._blocks: blocks.Decoder | None = None
        self.done = False
        self.received = 0  # bytes on the wire

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
            if self._blocks is not None:
                data = self._blocks.feed(data)
            if self.done:
                self._decoder.finish()
                if self._blocks is not None:
                    self._blocks.finish()
            if data:
                return data
        return None

    def unframe(self, verify: bool) -> None:
        """The body is in ClickHouse's compressed blocks (decompress=1), inside any Content-Encoding."""
        self._blocks = blocks.Decoder(verify)

    @property
    def blocks(self) -> int:
        """Compressed blocks read so far (0 without decompress=1)."""
        return self._blocks.blocks if self._blocks is not None else 0

    async def read_all(self) -> bytes:
        chunks = []
        while (chunk := await self.read()) is not None:
            chunks.append(chunk)
        return b"".join(chunks)

    async def drain(self) -> None:
        """Discard what the client still sends, so it reads our answer instead of a broken pipe."""
        while not self.done:
            message = await self._receive()
            self.done = message["type"] == "http.disconnect" or not message.get("more_body", False)

    async def wait_disconnect(self) -> None:
        """Returns when the client goes away (or the response is complete); after the body was read."""
        while (await self._receive())["type"] != "http.disconnect":
            pass


def asgi_headers(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode(), v.encode()) for k, v in headers.items()]


class Reply:
    """A complete (non-streamed) response."""

    def __init__(self, status: int = 200, headers: dict[str, str] | None = None, body: bytes = b"") -> None:
        self.status, self.headers, self.body = status, headers or {}, body

    async def send(self, send: Callable) -> None:
        headers = asgi_headers(self.headers) + [(b"content-length", str(len(self.body)).encode())]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


class ResponseEncoder:
    """What a response body goes through: ClickHouse's compressed blocks (compress=1), then the
    Content-Encoding (enable_http_compression=1 and Accept-Encoding), as on a server."""

    def __init__(self, framed: bool, encoding: str | None, level: int) -> None:
        self.encoding = encoding
        self._framing = blocks.Encoder() if framed else None
        self._http = compressor(encoding, level) if encoding else None

    @property
    def blocks(self) -> int:
        return self._framing.blocks if self._framing is not None else 0

    def __bool__(self) -> bool:
        return self._framing is not None or self._http is not None

    def compress(self, data: bytes) -> bytes:
        if self._framing is not None:
            data = self._framing.compress(data)
        return self._http.compress(data) if self._http is not None and data else data

    def flush(self) -> bytes:
        return self._http.flush() if self._http is not None else b""


def content_type(fmt: str) -> str:
    """The Content-Type ClickHouse sends for an output format."""
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


def summary(**counts: float) -> str:
    """The X-ClickHouse-Summary header (ClickHouse sends the numbers as strings)."""
    keys = ("read_rows", "read_bytes", "written_rows", "written_bytes", "total_rows_to_read",
            "result_rows", "result_bytes", "elapsed_ns")
    return orjson.dumps({k: str(int(counts.get(k, 0))) for k in keys}).decode()


def exception_block(message: bytes, tag: str) -> bytes:
    """How ClickHouse 25.11+ reports an error after the response has started (clickhouse-connect
    recognizes it by the X-ClickHouse-Exception-Tag header's tag)."""
    return (b"__exception__\r\n" + tag.encode() + b"\r\n" + message + b"\n"
            + f"{len(message)} {tag}".encode() + b"\r\n__exception__\r\n")
