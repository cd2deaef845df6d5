"""The ClickHouse HTTP stand-in (deploy/clickhouse_http) against the official client and raw HTTP.

Each test module run starts the server as a subprocess on a free port with a fresh data dir and
its own users (the writer's credentials go with every request; test_clickhouse_access.py tests
who may do what); everything goes through the real embedded engine.
"""

from __future__ import annotations

import gzip
import json
import os
import secrets
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from decimal import Decimal, localcontext
from pathlib import Path

import clickhouse_connect
import httpx
import lz4.frame
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from deploy.clickhouse_http import blocks

REPO = Path(__file__).resolve().parents[2]
# This module's servers' users (the same for every server, so a restarted one still lets us in).
USERS = {"CLICKHOUSE_USER": "writer", "CLICKHOUSE_PASSWORD": secrets.token_urlsafe(16),
         "CLICKHOUSE_READER_USER": "reader", "CLICKHOUSE_READER_PASSWORD": secrets.token_urlsafe(16)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python -m deploy.clickhouse_http` in a subprocess."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = path.parent / f"{path.name}-{self.port}.log"
        self.auth = (USERS["CLICKHOUSE_USER"], USERS["CLICKHOUSE_PASSWORD"])
        self.http = httpx.Client(auth=self.auth, timeout=5)  # raw HTTP as the writer
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "deploy.clickhouse_http", "--host", "127.0.0.1", "--port", str(self.port),
                 "--path", str(path), "--log-level", "DEBUG"],
                cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **USERS},
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/ping", timeout=1).text == "Ok.\n":
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.proc.kill()
        raise RuntimeError(f"server not ready in time:\n{self.log.read_text()}")

    def client(self, **kwargs):
        return clickhouse_connect.get_client(host="127.0.0.1", port=self.port, username=self.auth[0],
                                             password=self.auth[1], **kwargs)

    def stop(self) -> int:
        self.http.close()
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("clickhouse") / "data")
    yield srv
    assert srv.stop() == 0


@pytest.fixture
def db(server):
    """A fresh database name, so the tests can run twice against the same server."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    server.client().command(f"CREATE DATABASE {name}")
    return name


def _create_events(client, table: str) -> None:
    client.command(
        f"CREATE TABLE {table} (tenant LowCardinality(String), user String, n UInt64, payload String, "
        "credits Decimal(38, 12)) ENGINE = MergeTree ORDER BY (tenant, n)"
    )


def _events(count: int) -> list[tuple]:
    return [(f"tenant-{i % 7}", f"user-{i % 101}", i, "p" * 60, Decimal(i) / 1000) for i in range(count)]


def _expected(rows: list[tuple], tenant: str) -> tuple[int, int, Decimal]:
    mine = [r for r in rows if r[0] == tenant]
    return len(mine), sum(r[2] for r in mine), sum((r[4] for r in mine), Decimal(0))


def test_insert_100k_lz4_frames_and_bound_parameters(server, db):
    client = server.client()  # compress=True: lz4, one frame per Native block
    table = f"{db}.events"
    _create_events(client, table)
    rows = _events(100_000)
    blocks = client.create_insert_context(table, data=rows).block_row_count
    assert blocks < 50_000, "rows must span several Native blocks (so several lz4 frames)"

    summary = client.insert(table, rows)

    assert summary.written_rows == 100_000
    assert client.query(f"SELECT count() FROM {table}").result_rows == [(100_000,)]
    result = client.query(
        f"SELECT count(), sum(n), sum(credits) FROM {table} WHERE tenant = {{tenant:String}} AND n >= {{low:UInt64}}",
        parameters={"tenant": "tenant-3", "low": 0},
    )
    assert result.result_rows == [_expected(rows, "tenant-3")]


@pytest.mark.parametrize("compress", [False, "gzip", "zstd", "lz4"])
def test_insert_with_each_compression(server, db, compress):
    client = server.client(compress=compress)
    table = f"{db}.events"
    _create_events(client, table)
    rows = _events(100_000)
    client.insert(table, rows)
    assert client.query(f"SELECT count(), sum(n) FROM {table}").result_rows == [(100_000, sum(r[2] for r in rows))]


def test_raw_insert_rowbinary_plain_and_multi_member_gzip(server, db):
    client = server.client()
    client.command(f"CREATE TABLE {db}.rb (id UInt32, name String) ENGINE = MergeTree ORDER BY id")

    def rowbinary(ids: range) -> bytes:
        out = bytearray()
        for i in ids:
            name = f"name-{i}".encode()
            out += struct.pack("<I", i) + bytes([len(name)]) + name
        return bytes(out)

    client.raw_insert(f"{db}.rb", ["id", "name"], rowbinary(range(0, 1000)), fmt="RowBinary")
    two_members = gzip.compress(rowbinary(range(1000, 2000))) + gzip.compress(rowbinary(range(2000, 3000)))
    client.raw_insert(f"{db}.rb", ["id", "name"], two_members, fmt="RowBinary", compression="gzip")

    assert client.query(f"SELECT count(), sum(id), max(name) FROM {db}.rb").result_rows == [
        (3000, sum(range(3000)), "name-999")
    ]


def test_raw_http_jsoneachrow_insert_chunked_and_lz4(server, db):
    client = server.client()
    client.command(f"CREATE TABLE {db}.j (id UInt32, tag String) ENGINE = MergeTree ORDER BY id")
    lines = [json.dumps({"id": i, "tag": f"t{i % 3}"}).encode() + b"\n" for i in range(10_000)]

    def chunks():  # no Content-Length: Transfer-Encoding: chunked, the query heads the body
        yield f"INSERT INTO {db}.j FORMAT JSONEachRow\n".encode()
        for i in range(0, 5000, 500):
            yield b"".join(lines[i:i + 500])

    response = server.http.post(server.url, content=chunks())
    assert response.status_code == 200, response.text
    frames = b"".join(lz4.frame.compress(b"".join(lines[i:i + 1000])) for i in range(5000, 10_000, 1000))
    response = server.http.post(server.url, params={"query": f"INSERT INTO {db}.j FORMAT JSONEachRow"}, content=frames,
                          headers={"Content-Encoding": "lz4"})
    assert response.status_code == 200, response.text
    assert json.loads(response.headers["X-ClickHouse-Summary"])["written_rows"] == "5000"
    assert client.query(f"SELECT count(), uniqExact(id) FROM {db}.j").result_rows == [(10_000, 10_000)]


def test_errors_surface_with_server_message_and_code(server, db):
    client = server.client()
    with pytest.raises(DatabaseError, match="Syntax error") as syntax:
        client.query("SELEC 1")
    assert "SYNTAX_ERROR" in str(syntax.value)
    with pytest.raises(DatabaseError, match="UNKNOWN_TABLE"):
        client.query(f"SELECT * FROM {db}.missing")
    with pytest.raises(DatabaseError, match="UNKNOWN_TABLE"):
        client.insert(f"{db}.missing", [(1,)], column_names=["a"], column_type_names=["UInt8"])
    client.command(f"CREATE TABLE {db}.typed (a UInt8) ENGINE = Memory")
    bad = server.http.post(server.url, content=f"INSERT INTO {db}.typed FORMAT CSV\n1\nnot-a-number\n".encode())
    assert bad.status_code == 400 and bad.headers["X-ClickHouse-Exception-Code"] == "117"  # INCORRECT_DATA
    assert client.query(f"SELECT count() FROM {db}.typed").result_rows == [(0,)]  # nothing half-inserted

    response = server.http.post(server.url, content=b"SELECT * FROM nowhere_at_all")
    assert response.status_code == 404
    assert response.headers["X-ClickHouse-Exception-Code"] == "60"
    assert response.text.startswith("Code: 60. DB::Exception: ") and "(version " in response.text
    response = server.http.post(server.url, content=b"SELECT 1; SELECT 2")
    assert response.status_code == 400 and response.headers["X-ClickHouse-Exception-Code"] == "62"


def test_settings_and_database_apply_to_one_request_only(server, db):
    client = server.client()  # has a session: overrides must not stick to it
    query = "SELECT number FROM numbers(100)"
    with pytest.raises(DatabaseError, match="TOO_MANY_ROWS_OR_BYTES"):
        client.query(query, settings={"max_result_rows": 10, "result_overflow_mode": "throw"})
    assert len(client.query(query).result_rows) == 100
    assert client.command("SELECT getSetting('max_threads')", settings={"max_threads": 1}) == 1
    assert client.command("SELECT getSetting('max_threads')") != 1

    client.command("SET max_result_rows = 5")  # a session's own SET persists...
    client.command("SET result_overflow_mode = 'throw'")
    with pytest.raises(DatabaseError, match="TOO_MANY_ROWS_OR_BYTES"):
        client.query(query)
    assert len(client.query(query, settings={"max_result_rows": 0}).result_rows) == 100
    with pytest.raises(DatabaseError, match="TOO_MANY_ROWS_OR_BYTES"):  # ...and survives the override
        client.query(query)

    client.command(f"CREATE TABLE {db}.only_here (a UInt8) ENGINE = Memory")
    scoped = server.client(database=db)
    scoped.command("INSERT INTO only_here VALUES (7)")
    assert scoped.query("SELECT a FROM only_here").result_rows == [(7,)]
    session = {"session_id": uuid.uuid4().hex}
    one = server.http.get(server.url, params={**session, "database": db, "query": "SELECT currentDatabase()"})
    after = server.http.get(server.url, params={**session, "query": "SELECT currentDatabase()"})
    assert (one.text, after.text) == (f"{db}\n", "default\n")
    assert server.http.get(server.url, params={"query": "SELECT currentDatabase()"}).text == "default\n"


def test_concurrent_clients_insert_and_query(server, db):
    table = f"{db}.events"
    _create_events(server.client(), table)
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            client = server.client()
            for batch in range(5):
                rows = [(f"w{worker}", "u", batch * 10_000 + i, "x", Decimal(1)) for i in range(10_000)]
                client.insert(table, rows)
                seen = client.query(f"SELECT count() FROM {table} WHERE tenant = {{t:String}}",
                                    parameters={"t": f"w{worker}"}).result_rows[0][0]
                assert seen == (batch + 1) * 10_000
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert not errors, errors
    assert server.client().query(f"SELECT count(), uniqExact(tenant), sum(credits) FROM {table}").result_rows == [
        (400_000, 8, Decimal(400_000))
    ]


def test_data_persists_across_restarts(tmp_path):
    path = tmp_path / "data"
    first = Server(path)
    try:
        client = first.client()
        client.command("CREATE TABLE kept (id UInt64, note String) ENGINE = MergeTree ORDER BY id")
        client.insert("kept", [(i, f"n{i}") for i in range(12_345)])
    finally:
        assert first.stop() == 0
    second = Server(path)
    try:
        assert second.client().query("SELECT count(), sum(id) FROM kept").result_rows == [(12_345, sum(range(12_345)))]
    finally:
        assert second.stop() == 0


def test_curl_style_requests(server):
    assert httpx.get(f"{server.url}/ping").text == "Ok.\n"
    assert httpx.get(f"{server.url}/").text == "Ok.\n"
    response = server.http.get(f"{server.url}/?query=SELECT%201")
    assert response.status_code == 200 and response.text == "1\n"
    assert response.headers["X-ClickHouse-Format"] == "TabSeparated"

    query = b"SELECT number AS n, toString(number) AS s FROM numbers(3) FORMAT JSONEachRow"
    response = server.http.post(server.url, content=query)
    assert [json.loads(line) for line in response.text.splitlines()] == [{"n": i, "s": str(i)} for i in range(3)]
    assert response.headers["X-ClickHouse-Format"] == "JSONEachRow"

    response = server.http.post(server.url, params={"default_format": "JSON", "param_x": "41"},
                          content=b"SELECT {x:UInt8} + 1 AS answer")
    assert response.json()["data"] == [{"answer": 42}]

    response = server.http.get(server.url, params={"query": "CREATE TABLE nope (a UInt8) ENGINE = Memory"})
    assert response.headers["X-ClickHouse-Exception-Code"] == "164"  # GET is read-only

    compressed = server.http.get(server.url, headers={"Accept-Encoding": "gzip"},
                           params={"query": "SELECT number FROM numbers(1000)", "enable_http_compression": "1"})
    assert compressed.headers["Content-Encoding"] == "gzip"
    assert compressed.text == "".join(f"{i}\n" for i in range(1000))


def test_decimal_round_trip(server, db):
    client = server.client()
    client.command(f"CREATE TABLE {db}.money (id UInt8, amount Decimal(38, 12)) ENGINE = MergeTree ORDER BY id")
    values = [Decimal("0.000000000001"), Decimal("12345678901234567890.123456789012"), Decimal("-0.5")]
    client.insert(f"{db}.money", list(enumerate(values)))
    assert [row[0] for row in client.query(f"SELECT amount FROM {db}.money ORDER BY id").result_rows] == values
    with localcontext() as exact:
        exact.prec = 60
        total = sum(values)
    assert client.query(f"SELECT sum(amount) FROM {db}.money").result_rows == [(total,)]


def test_streaming_results_long_bound_parameters_and_metrics(server, db):
    client = server.client()
    with client.query_rows_stream("SELECT number FROM numbers(500000)") as stream:
        assert sum(row[0] for row in stream) == sum(range(500_000))
    with pytest.raises(DatabaseError, match="FUNCTION_THROW_IF_VALUE_IS_NON_ZERO"):
        with client.query_rows_stream("SELECT throwIf(number = 300000) FROM numbers(400000)") as stream:
            for _ in stream:
                pass

    ids = list(range(0, 40_000, 3))  # long enough that the client sends multipart/form-data
    result = client.query("SELECT count() FROM numbers(40000) WHERE number IN {ids:Array(UInt64)}",
                          parameters={"ids": ids})
    assert result.result_rows == [(len(ids),)]

    server.http.post(server.url, content=b"SELECT * FROM nowhere_at_all")
    text = httpx.get(f"{server.url}/metrics").text
    assert "openmonetize_clickhouse_http_requests_total" in text and "openmonetize_clickhouse_http_inserted_rows_total" in text
    assert 'openmonetize_clickhouse_http_errors_total{code="60",name="UNKNOWN_TABLE"}' in text


def test_x_clickhouse_headers_name_the_database_format_and_query_id(server, db):
    """JDBC, clickhouse-go and DBeaver name these in headers, not URL parameters; a URL parameter wins."""
    server.client().command(f"CREATE TABLE {db}.marker (a UInt8) ENGINE = Memory")
    headers = {"X-ClickHouse-Database": db, "X-ClickHouse-Format": "JSONEachRow", "X-ClickHouse-Query-Id": "q-hdr-1"}
    answer = server.http.post(server.url, headers=headers, content=b"SELECT currentDatabase() AS d, toUInt8(count()) AS n FROM marker")
    assert answer.status_code == 200, answer.text
    assert json.loads(answer.text) == {"d": db, "n": 0}
    assert answer.headers["X-ClickHouse-Format"] == "JSONEachRow" and answer.headers["X-ClickHouse-Query-Id"] == "q-hdr-1"
    overridden = server.http.post(server.url, headers=headers, params={"database": "default", "default_format": "TSV"},
                                  content=b"SELECT currentDatabase()")
    assert overridden.text == "default\n"



def _unframe(body: bytes) -> bytes:
    decoder = blocks.Decoder()
    data = decoder.feed(body)
    decoder.finish()
    return data


def _blocks_metric(server, direction: str) -> float:
    for line in httpx.get(f"{server.url}/metrics").text.splitlines():
        if line.startswith(f'openmonetize_clickhouse_http_compressed_blocks_total{{direction="{direction}"}}'):
            return float(line.split()[-1])
    return 0.0


def test_compressed_blocks_both_ways(server, db):
    """compress=1 / decompress=1, ClickHouse's checksummed blocks (what JDBC and clickhouse-go send
    by default): responses are LZ4 blocks, inside any Content-Encoding; request bodies may be LZ4,
    ZSTD or uncompressed blocks, their checksums checked."""
    query = b"SELECT number, toString(number) FROM numbers(200000)"
    expected = "".join(f"{i}\t{i}\n" for i in range(200_000)).encode()
    sent_before = _blocks_metric(server, "response")
    streamed = server.http.post(server.url, params={"compress": "1"}, content=query)
    assert streamed.status_code == 200 and "Content-Encoding" not in streamed.headers
    assert streamed.content[16] == blocks.LZ4 and _unframe(streamed.content) == expected
    assert json.loads(streamed.headers["X-ClickHouse-Summary"])["read_rows"] != "0"
    whole = server.http.post(server.url, params={"compress": "1", "wait_end_of_query": "1"}, content=query)
    assert _unframe(whole.content) == expected
    gzipped = server.http.post(server.url, params={"compress": "1", "enable_http_compression": "1"},
                               headers={"Accept-Encoding": "gzip"}, content=query)
    assert gzipped.headers["Content-Encoding"] == "gzip"  # httpx took the gzip off; the blocks are inside
    assert _unframe(gzipped.content) == expected
    assert _blocks_metric(server, "response") >= sent_before + 3

    server.client().command(f"CREATE TABLE {db}.framed (id UInt32, name String) ENGINE = MergeTree ORDER BY id")
    rows = b"".join(f"{i}\tname-{i}\n".encode() for i in range(30_000))
    body = (blocks.encode(f"INSERT INTO {db}.framed FORMAT TabSeparated\n".encode() + rows[:100_000], blocks.LZ4)
            + blocks.encode(rows[100_000:300_000], blocks.ZSTD) + blocks.encode(rows[300_000:], blocks.NONE))
    read_before = _blocks_metric(server, "request")
    inserted = server.http.post(server.url, params={"decompress": "1"}, content=body)
    assert inserted.status_code == 200, inserted.text
    assert json.loads(inserted.headers["X-ClickHouse-Summary"])["written_rows"] == "30000"
    assert _blocks_metric(server, "request") == read_before + 3
    count = server.http.post(server.url, params={"decompress": "1", "compress": "1"},
                             content=blocks.encode(f"SELECT count(), sum(id) FROM {db}.framed".encode()))
    assert _unframe(count.content) == f"30000\t{sum(range(30_000))}\n".encode()

    # One flipped bit in the last block: nothing is inserted, and the error names the block.
    corrupt = bytearray(body)
    corrupt[-5] ^= 0x10
    refused = server.http.post(server.url, params={"decompress": "1"}, content=bytes(corrupt))
    assert refused.status_code == 500 and refused.headers["X-ClickHouse-Exception-Code"] == "40"
    last = len(body) - len(blocks.encode(rows[300_000:], blocks.NONE))
    assert f"checksum doesn't match in the block at byte {last}" in refused.text
    assert "CHECKSUM_DOESNT_MATCH" in refused.text
    assert server.client().command(f"SELECT count() FROM {db}.framed") == 30_000
    # ... unless the client turned checking off, as ClickHouse's setting does.
    unchecked = server.http.post(
        server.url, params={"decompress": "1", "http_native_compression_disable_checksumming_on_decompress": "1"},
        content=bytes(corrupt))
    assert unchecked.status_code == 200, unchecked.text
    assert server.client().command(f"SELECT count() FROM {db}.framed") == 60_000

    # A body that is not in blocks at all, and an error answered in blocks (compress=1).
    plain = server.http.post(server.url, params={"decompress": "1"}, content=b"SELECT 1")
    assert plain.headers["X-ClickHouse-Exception-Code"] == "32" and "ends inside a block" in plain.text
    missing = server.http.post(server.url, params={"compress": "1"}, content=b"SELECT * FROM nowhere_at_all")
    assert missing.headers["X-ClickHouse-Exception-Code"] == "60"
    assert b"UNKNOWN_TABLE" in _unframe(missing.content)
