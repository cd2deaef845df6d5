"""The embedded ClickHouse engine (chdb) with ClickHouse server semantics on top.

chdb hosts one engine per process, bound to one data path. Connections to that path are cheap
(well under a millisecond) and each keeps its own session state (current database, SET
settings, temporary tables), and queries on different connections run in parallel. So:

* an HTTP session (`session_id`) gets its own long-lived connection, as a server session would;
* a request without a session gets a fresh connection, closed afterwards;
* the `database` parameter and per-request settings are applied to the connection for that
  request only (restored afterwards on a session connection).

One "anchor" connection stays open for the server's lifetime, because the engine shuts down
(and flushes) when its last connection closes. All methods here block: call them from worker
threads. A single connection is never used by two threads at once (see `Lease`).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import chdb

_CODE = re.compile(r"Code: (\d+)\. DB::Exception: (.*)", re.DOTALL)
_NAME = re.compile(r"\s*\(([A-Z][A-Z0-9_]*)\)\s*$")
_VERSION = re.compile(r"\s*\(version [^)]*\)\s*$")
_SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"-?\d+(\.\d+)?")

# src/Server/HTTP/exceptionCodeToHTTPStatus.cpp, by error name.
_STATUS_BY_NAME = {
    401: {"REQUIRED_PASSWORD"},
    403: {"UNKNOWN_USER", "WRONG_PASSWORD", "AUTHENTICATION_FAILED", "SET_NON_GRANTED_ROLE", "ACCESS_DENIED"},
    400: {
        "BAD_ARGUMENTS", "CANNOT_COMPILE_REGEXP", "CANNOT_PARSE_TEXT", "CANNOT_PARSE_ESCAPE_SEQUENCE",
        "CANNOT_PARSE_QUOTED_STRING", "CANNOT_PARSE_DATE", "CANNOT_PARSE_DATETIME", "CANNOT_PARSE_NUMBER",
        "CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING", "CANNOT_PARSE_IPV4", "CANNOT_PARSE_IPV6",
        "CANNOT_PARSE_INPUT_ASSERTION_FAILED", "CANNOT_PARSE_UUID", "DUPLICATE_COLUMN", "ILLEGAL_COLUMN",
        "UNKNOWN_ELEMENT_IN_AST", "UNKNOWN_TYPE_OF_AST_NODE", "THERE_IS_NO_COLUMN", "TOO_DEEP_AST",
        "TOO_BIG_AST", "UNEXPECTED_AST_STRUCTURE", "SYNTAX_ERROR", "INCORRECT_DATA", "TYPE_MISMATCH",
        "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE",
    },
    404: {
        "UNKNOWN_TABLE", "UNKNOWN_FUNCTION", "UNKNOWN_IDENTIFIER", "UNKNOWN_TYPE", "UNKNOWN_STORAGE",
        "UNKNOWN_DATABASE", "UNKNOWN_SETTING", "UNKNOWN_DIRECTION_OF_SORTING", "UNKNOWN_AGGREGATE_FUNCTION",
        "UNKNOWN_FORMAT", "UNKNOWN_DATABASE_ENGINE", "UNKNOWN_TYPE_OF_QUERY", "UNKNOWN_ROLE",
    },
    413: {"QUERY_IS_TOO_LARGE"},
    501: {"NOT_IMPLEMENTED"},
    503: {"SOCKET_TIMEOUT", "CANNOT_OPEN_FILE", "CANNOT_SCHEDULE_TASK"},
    411: {"HTTP_LENGTH_REQUIRED"},
    408: {"TIMEOUT_EXCEEDED"},
    415: {"UNSUPPORTED_MEDIA_TYPE"},
}
_STATUS = {name: status for status, names in _STATUS_BY_NAME.items() for name in names}

MAX_SESSION_TIMEOUT = 3600


class ClickHouseError(Exception):
    """An error as the server reports it: `Code: 62. DB::Exception: <text> (SYNTAX_ERROR)`."""

    def __init__(self, code: int, text: str, name: str = "") -> None:
        super().__init__(f"Code: {code}. DB::Exception: {text} ({name})")
        self.code, self.text, self.name = code, text, name
        self.status: int | None = None  # the HTTP status, when not the one of the error's name

    @classmethod
    def wrap(cls, exc: BaseException) -> ClickHouseError:
        if isinstance(exc, ClickHouseError):
            return exc
        match = _CODE.search(str(exc))
        if match is None:
            return cls(1001, f"{type(exc).__name__}: {exc}", "STD_EXCEPTION")
        text = _VERSION.sub("", match.group(2))
        name = _NAME.search(text)
        return cls(int(match.group(1)), text[: name.start()] if name else text, name.group(1) if name else "")

    @property
    def http_status(self) -> int:
        return self.status or _STATUS.get(self.name, 500)

    def body(self, version: str) -> bytes:
        return f"{self} (version {version})\n".encode()


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        raise ClickHouseError.wrap(exc) from exc


def _quote_identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def _set_statement(settings: Mapping[str, str | None]) -> str:
    """`SET a = 1, b = 'x', c = DEFAULT` from string values (None means DEFAULT)."""
    parts = []
    for name, value in settings.items():
        if not _SETTING_NAME.fullmatch(name):
            raise ClickHouseError(36, f"Invalid setting name '{name}'.", "BAD_ARGUMENTS")
        if value is None:
            literal = "DEFAULT"
        elif _NUMBER.fullmatch(value):
            literal = value
        else:
            literal = "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
        parts.append(f"{name} = {literal}")
    return "SET " + ", ".join(parts)


@dataclass
class _Session:
    conn: Any
    timeout: float
    expires: float = 0.0
    busy: bool = False
    # What the session itself has (so a request's overrides can be undone), learnt lazily and
    # forgotten after any statement that may change session state (SET, USE, ...).
    database: str | None = None
    settings: dict[str, tuple[str, bool]] = field(default_factory=dict)


class Lease:
    """Exclusive use of one connection for one request; every call is serialized by a lock so a
    cleanup issued from another thread waits for an in-flight call to return."""

    def __init__(self, engine: Engine, conn: Any, session: _Session | None, session_id: str | None) -> None:
        self._engine, self.conn, self._session, self._session_id = engine, conn, session, session_id
        self._lock = threading.Lock()
        self._restore_db: str | None = None
        self._restore_settings: dict[str, str | None] = {}

    def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        with self._lock, _errors():
            return fn(*args, **kwargs)

    def _run(self, sql: str) -> Any:
        return self.conn.query(sql, "TabSeparated")

    def apply(self, database: str | None, settings: Mapping[str, str]) -> None:
        """Make `database` current and `settings` effective for this request only."""
        with self._lock, _errors():
            session = self._session
            if database and session is not None and session.database is None:
                session.database = self._run("SELECT currentDatabase()").bytes().decode().strip()
            if database and (session is None or session.database != database):
                self._run(f"USE {_quote_identifier(database)}")
                self._restore_db = session.database if session is not None else None
            if not settings:
                return
            if session is None:
                self._run(_set_statement(settings))
                return
            unknown = [name for name in settings if name not in session.settings]
            if unknown and all(_SETTING_NAME.fullmatch(name) for name in unknown):
                names = ", ".join(f"'{name}'" for name in unknown)
                rows = self._run(f"SELECT name, value, changed FROM system.settings WHERE name IN ({names})")
                for line in rows.bytes().decode().splitlines():
                    name, value, changed = line.split("\t")
                    session.settings[name] = (value, changed == "1")
            overrides = {k: v for k, v in settings.items() if k not in session.settings or session.settings[k][0] != v}
            if overrides:
                self._restore_settings = {
                    k: (session.settings[k][0] if session.settings[k][1] else None)
                    for k in overrides
                    if k in session.settings
                }
                self._run(_set_statement(overrides))

    def forget_session_state(self) -> None:
        """The statement about to run may change the session's own state (SET, USE ...)."""
        if self._session is not None:
            self._session.database = None
            self._session.settings.clear()

    def release(self, close_session: bool = False) -> None:
        with self._lock:
            try:
                if self._session is not None and not close_session:
                    if self._restore_settings:
                        self._run(_set_statement(self._restore_settings))
                    if self._restore_db:
                        self._run(f"USE {_quote_identifier(self._restore_db)}")
            except Exception:
                close_session = True  # can't vouch for the session's state any more
            finally:
                self._engine._release(self, close_session)

    @property
    def session(self) -> _Session | None:
        return self._session

    @property
    def session_id(self) -> str | None:
        return self._session_id


class Engine:
    """The chdb engine on `path`, its sessions, and facts a server reports (version, timezone)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._anchor = chdb.connect(path)
        self._lock = threading.Lock()
        self._sessions: dict[str, _Session] = {}
        with _errors():
            info = self._anchor.query("SELECT version(), timezone()", "TabSeparated").bytes().decode()
            self.version, self.timezone = info.strip().split("\t")
            formats = self._anchor.query("SELECT name FROM system.formats WHERE is_output", "TabSeparated")
            self.output_formats = frozenset(formats.bytes().decode().lower().split())
            functions = self._anchor.query("SELECT name FROM system.table_functions", "TabSeparated")
            engines = self._anchor.query("SELECT name FROM system.table_engines", "TabSeparated")
            self.table_functions = frozenset(functions.bytes().decode().split())
            self.table_engines = frozenset(engines.bytes().decode().split())

    def connect(self) -> Any:
        """A bare new connection (the caller closes it)."""
        return self._connect(())

    def _connect(self, setup: tuple[str, ...]) -> Any:
        """A new connection, with `setup` (a user's fixed settings, its default database) run on it."""
        with _errors():
            conn = chdb.connect(self.path)
            try:
                for sql in setup:
                    conn.query(sql, "TabSeparated")
            except BaseException:
                conn.close()
                raise
        return conn

    def lease(self, session_id: str | None, timeout: float, check: bool, owner: str = "",
              setup: tuple[str, ...] = ()) -> Lease:
        """A connection for one request: the session's own, or a fresh one. Sessions belong to
        their `owner` (the user): another user's session of the same id is another session."""
        if not session_id:
            return Lease(self, self._connect(setup), None, None)
        if not 0 < timeout <= MAX_SESSION_TIMEOUT:
            raise ClickHouseError(
                374, f"Session timeout {timeout} is out of range (0, {MAX_SESSION_TIMEOUT}].", "INVALID_SESSION_TIMEOUT"
            )
        key = f"{owner}\0{session_id}"
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                if check:
                    raise ClickHouseError(372, f"Session {session_id} not found.", "SESSION_NOT_FOUND")
                session = _Session(self._connect(setup), timeout)
                self._sessions[key] = session
            if session.busy:
                raise ClickHouseError(
                    373, f"Session {session_id} is locked by a concurrent client.", "SESSION_IS_LOCKED"
                )
            session.busy = True
            session.timeout = timeout
            return Lease(self, session.conn, session, key)

    def _release(self, lease: Lease, close_session: bool) -> None:
        session = lease.session
        if session is None:
            lease.conn.close()
            return
        with self._lock:
            session.busy = False
            session.expires = time.monotonic() + session.timeout
            if close_session:
                self._sessions.pop(lease.session_id or "", None)
        if close_session:
            session.conn.close()

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    def expire_sessions(self) -> int:
        """Close sessions idle for longer than their timeout; returns how many."""
        now = time.monotonic()
        with self._lock:
            expired = [sid for sid, s in self._sessions.items() if not s.busy and s.expires <= now]
            closing = [self._sessions.pop(sid) for sid in expired]
        for session in closing:
            session.conn.close()
        return len(closing)

    def close(self) -> None:
        """Close every connection; the engine flushes and shuts down with the last one."""
        with self._lock:
            sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            session.conn.close()
        self._anchor.close()
