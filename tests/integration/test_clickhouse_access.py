"""Who may do what on the stack's ClickHouse front (deploy/clickhouse_http/access.py).

Against the stack's own front (real chdb engine) with the users and passwords the stack generated
(openmonetize/clickhouse_client.py). Every refused statement is tried with no credentials, with a
wrong password and as the read-only reporting user; those that reach outside the engine (files,
URLs, INTO OUTFILE) as the writer too. Each test uses its own table and file names, so the module
can run twice in a row.
"""

from __future__ import annotations

import socket
import threading
import uuid
from pathlib import Path

import clickhouse_connect
import httpx
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from openmonetize import clickhouse_client


@pytest.fixture(scope="module")
def writer(settings):
    return clickhouse_client.credentials(settings, "writer")


@pytest.fixture(scope="module")
def reader(settings):
    return clickhouse_client.credentials(settings, "reader")


class Listener:
    """A TCP port that records whether anything connected to it (the target of url())."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def listener():
    srv = Listener()
    yield srv
    srv.close()


def post(settings, sql: str, auth=None, **kwargs) -> httpx.Response:
    return httpx.post(clickhouse_client.base_url(settings), content=sql.encode(), auth=auth, timeout=30, **kwargs)


def refused_for_all(settings, writer, reader, sql: str, writer_too: bool) -> None:
    """Refused with no credentials, a wrong password, as the reporting user (and as the writer)."""
    none = post(settings, sql)
    assert none.status_code == 401, none.text
    assert none.headers["X-ClickHouse-Exception-Code"] == "516"
    assert none.text.startswith("Code: 516. DB::Exception: default: Authentication failed")
    wrong = post(settings, sql, auth=(writer.user, writer.password + "x"))
    assert wrong.status_code == 403, wrong.text
    assert wrong.headers["X-ClickHouse-Exception-Code"] == "516"
    assert "Authentication failed" in wrong.text and writer.password not in wrong.text
    as_reader = post(settings, sql, auth=reader.basic_auth)
    assert as_reader.status_code >= 400, as_reader.text
    assert as_reader.headers["X-ClickHouse-Exception-Code"] in ("164", "358", "497"), as_reader.text
    if writer_too:
        as_writer = post(settings, sql, auth=writer.basic_auth)
        assert as_writer.status_code >= 400, as_writer.text
        assert as_writer.headers["X-ClickHouse-Exception-Code"] in ("358", "497"), as_writer.text


def test_reading_files_is_refused_to_everyone(settings, writer, reader):
    for sql in ("SELECT * FROM file('/etc/passwd', 'LineAsString') LIMIT 1",
                "SELECT file('/etc/passwd')",
                "SELECT * FROM `file`('/etc/passwd', 'LineAsString')",
                "SELECT * FROM FILE('/etc/passwd', 'LineAsString')",
                "DESCRIBE TABLE file('/etc/passwd', 'LineAsString')"):
        refused_for_all(settings, writer, reader, sql, writer_too=True)


def test_url_is_refused_to_everyone_and_nothing_connects(settings, writer, reader, listener):
    for sql in (f"SELECT * FROM url('http://127.0.0.1:{listener.port}/', 'LineAsString')",
                f"SELECT * FROM remote('127.0.0.1:{listener.port}', system.one)",
                f"INSERT INTO FUNCTION url('http://127.0.0.1:{listener.port}/', 'CSV', 'a UInt8') SELECT 1"):
        refused_for_all(settings, writer, reader, sql, writer_too=True)
    assert listener.connections == 0


def test_writing_files_is_refused_to_everyone(settings, writer, reader, tmp_path):
    target = tmp_path / f"out-{uuid.uuid4().hex}.csv"
    for sql in (f"INSERT INTO FUNCTION file('{target}', 'CSV', 'a UInt8') VALUES (1)",
                f"INSERT INTO FUNCTION file('{target}', 'CSV', 'a UInt8') SELECT 1",
                f"SELECT 1 INTO OUTFILE '{target}'",
                f"SELECT 1 INTO OUTFILE '{target}' FORMAT CSV",
                f"CREATE TABLE openmonetize.t_{uuid.uuid4().hex[:8]} (a UInt8) ENGINE = File(CSV, '{target}')"):
        refused_for_all(settings, writer, reader, sql, writer_too=True)
    assert not target.exists()
    assert not Path(target.name).exists()  # relative to the front's working directory


def test_ddl_is_refused_but_to_the_writer(settings, writer, reader):
    table = f"openmonetize.t_{uuid.uuid4().hex[:8]}"
    create = f"CREATE TABLE {table} (a UInt8) ENGINE = MergeTree ORDER BY a"
    refused_for_all(settings, writer, reader, create, writer_too=False)
    assert post(settings, create, auth=writer.basic_auth).status_code == 200
    try:
        refused_for_all(settings, writer, reader, f"DROP TABLE {table}", writer_too=False)
        exists = post(settings, f"EXISTS TABLE {table}", auth=reader.basic_auth)
        assert exists.text == "1\n"
        refused_for_all(settings, writer, reader, f"INSERT INTO {table} VALUES (1)", writer_too=False)
        refused_for_all(settings, writer, reader, f"INSERT INTO {table} SELECT 1", writer_too=False)
    finally:
        assert post(settings, f"DROP TABLE {table}", auth=writer.basic_auth).status_code == 200


def test_reporting_user_reads_openmonetize_only(settings, writer, reader):
    db = f"t_{uuid.uuid4().hex[:10]}"
    w = clickhouse_client.get_client(settings, "writer")
    w.command(f"CREATE DATABASE {db}")
    try:
        w.command(f"CREATE TABLE {db}.secret (a UInt8) ENGINE = MergeTree ORDER BY a")
        w.command(f"INSERT INTO {db}.secret VALUES (7)")
        r = clickhouse_client.get_client(settings, "reader")
        try:
            # Its database, unqualified names included, the catalog tables clients read, settings.
            assert r.command("SELECT count() FROM openmonetize.schema_migrations FINAL") > 0
            assert r.command("SELECT count() > 0 FROM schema_migrations") == 1
            assert r.query("SELECT 1 FROM system.one").result_rows == [(1,)]
            assert r.command("SELECT version()")
            assert r.query("SELECT name FROM system.databases").result_rows
            assert r.query("SELECT name FROM system.columns WHERE database = 'openmonetize' "
                           "AND table = 'usage_events'").result_rows
            assert r.query("SELECT number FROM numbers(3)", settings={"max_execution_time": 5}).row_count == 3
            for sql in (f"SELECT * FROM {db}.secret",
                        f"SELECT * FROM openmonetize.schema_migrations WHERE version IN (SELECT toString(a) FROM {db}.secret)",
                        f"SELECT * FROM merge('{db}', '.*')",
                        f"SELECT * FROM view(SELECT * FROM {db}.secret)",
                        "SELECT * FROM system.processes",
                        "SHOW PROCESSLIST"):
                with pytest.raises(DatabaseError) as raised:
                    r.query(sql)
                assert "497" in str(raised.value) or "ACCESS_DENIED" in str(raised.value), sql
            for sql in (f"INSERT INTO {db}.secret VALUES (1)", f"DROP TABLE {db}.secret",
                        f"ALTER TABLE {db}.secret DELETE WHERE 1", "CREATE TEMPORARY TABLE tmp (a UInt8)"):
                with pytest.raises(DatabaseError) as raised:
                    r.command(sql)
                assert "READONLY" in str(raised.value), sql
            # Nothing lifts read-only: not a URL setting, not SET, not a query's SETTINGS.
            for sql, extra in (("SELECT 1", {"readonly": "0"}), ("SELECT 1", {"allow_ddl": "1"}),
                               ("SELECT 1 SETTINGS readonly = 0", {}), ("SET readonly = 0", {})):
                response = post(settings, sql, auth=reader.basic_auth, params=extra)
                if extra.get("readonly") == "0":  # an HTTP-level parameter, as on a server: stays read-only
                    assert response.status_code == 200
                    refused = post(settings, f"INSERT INTO {db}.secret VALUES (2)", auth=reader.basic_auth, params=extra)
                    assert refused.headers["X-ClickHouse-Exception-Code"] == "164"
                else:
                    assert response.headers.get("X-ClickHouse-Exception-Code") == "164", (sql, response.text)
        finally:
            r.close()
        assert w.command(f"SELECT sum(a) FROM {db}.secret") == 7
    finally:
        w.command(f"DROP DATABASE IF EXISTS {db}")
        w.close()


def test_writer_inserts_usage_events(settings):
    w = clickhouse_client.get_client(settings, "writer", database=settings.clickhouse_database)
    try:
        event_id = f"access-{uuid.uuid4().hex}"  # its own tenant, as test_reports.py's rows
        columns = ["customer_id", "event_id", "user_id"]
        w.insert("usage_events", [[f"cus_{uuid.uuid4().hex[:16]}", event_id, "u1"]], column_names=columns)
        count = w.command("SELECT count() FROM usage_events WHERE event_id = {e:String}", parameters={"e": event_id})
        assert count == 1
    finally:
        w.close()


@pytest.mark.parametrize("method", ["basic", "params", "headers"])
def test_the_three_ways_to_authenticate(settings, writer, reader, method):
    url = clickhouse_client.base_url(settings)
    for creds, expected_user in ((writer, writer.user), (reader, reader.user)):
        if method == "basic":
            kwargs = {"auth": creds.basic_auth}
        elif method == "params":
            kwargs = {"params": {"user": creds.user, "password": creds.password}}
        else:
            kwargs = {"headers": creds.headers}
        response = httpx.post(url, content=b"SELECT currentUser() = 'default', 42", timeout=30, **kwargs)
        assert response.status_code == 200, response.text
        assert response.text.endswith("\t42\n")
        # Wrong password, same method: refused.
        if method == "basic":
            bad = {"auth": (creds.user, "nope")}
        elif method == "params":
            bad = {"params": {"user": creds.user, "password": "nope"}}
        else:
            bad = {"headers": {**creds.headers, "X-ClickHouse-Key": "nope"}}
        refused = httpx.post(url, content=b"SELECT 1", timeout=30, **bad)
        assert refused.status_code == 403 and refused.headers["X-ClickHouse-Exception-Code"] == "516"
        assert expected_user in refused.text


def test_clickhouse_connect_as_each_user(settings, writer, reader):
    for creds in (writer, reader):
        client = clickhouse_connect.get_client(dsn=clickhouse_client.base_url(settings), username=creds.user,
                                               password=creds.password)
        try:
            assert client.command("SELECT 1") == 1
        finally:
            client.close()
    with pytest.raises(DatabaseError) as raised:
        clickhouse_connect.get_client(dsn=clickhouse_client.base_url(settings), username=reader.user, password="nope")
    assert "516" in str(raised.value) or "AUTHENTICATION_FAILED" in str(raised.value)


def test_ping_and_metrics_need_no_credentials(settings):
    url = clickhouse_client.base_url(settings)
    assert httpx.get(f"{url}/ping").text == "Ok.\n"
    assert httpx.get(f"{url}/metrics").status_code == 200
    assert httpx.get(url, params={"query": "SELECT 1"}).status_code == 401


def test_stack_env_prints_both_users(settings, writer, reader):
    from deploy.local_stack.stack import Stack

    env = Stack(settings).env()
    assert (env["CLICKHOUSE_USER"], env["CLICKHOUSE_PASSWORD"]) == (writer.user, writer.password)
    assert (env["CLICKHOUSE_READER_USER"], env["CLICKHOUSE_READER_PASSWORD"]) == (reader.user, reader.password)
    secrets = clickhouse_client.secrets_file(settings)
    assert secrets.stat().st_mode & 0o077 == 0
