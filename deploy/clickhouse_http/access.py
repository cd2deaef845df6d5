"""Who may use the front, and what each user may run.

Users and passwords are checked the way a ClickHouse server checks them on its HTTP interface:
HTTP basic auth, `user`/`password` URL parameters, or `X-ClickHouse-User`/`X-ClickHouse-Key`
headers (one method per request); no credentials at all means user `default` with an empty
password, which does not exist here. Passwords are compared in constant time.

What a user may run is enforced in two layers:

* the engine's own settings, fixed on the user's connections when they are opened: a read-only
  user's connections get `readonly = 2, allow_ddl = 0` (no writes, no DDL, and neither setting
  can be lifted by `SET` or a query's `SETTINGS`; other settings such as `max_execution_time`
  stay changeable, as clickhouse-connect and the report routes need);
* the front's checks, on the engine's own parse of the statement (`EXPLAIN AST`, and
  `EXPLAIN QUERY TREE` for a read-only user's SELECT): functions, table functions and table
  engines that reach files, URLs, other servers or programs are refused for every user
  (`file`, `url`, `s3`, `remote`, `mysql`, `executable`, ...: everything the engine knows but a
  short list of harmless ones), and so are `INTO OUTFILE`, `BACKUP`/`RESTORE`, `SYSTEM` and
  dictionary sources; a read-only user may only read tables of its databases and a few
  catalog tables of `system` (what clients and BI tools read to connect and list tables).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from deploy.clickhouse_http.engine import ClickHouseError
from deploy.clickhouse_http.sqltext import Statement, words


@dataclass(frozen=True)
class User:
    name: str
    password: str = field(repr=False)
    readonly: bool = False
    # Lower-case names of table functions refused to others that this user may call (the writer's
    # `postgresql`, for the ledger forecast of docs/guides/reporting.md).
    allowed_functions: frozenset[str] = frozenset()
    # A read-only user's databases (the first is its default database); None: every database.
    databases: tuple[str, ...] | None = None

    @property
    def default_database(self) -> str | None:
        return self.databases[0] if self.databases else None


def _auth_failed(name: str, status: int = 403) -> ClickHouseError:
    err = ClickHouseError(
        516, f"{name}: Authentication failed: password is incorrect, or there is no user with such name.",
        "AUTHENTICATION_FAILED",
    )
    err.status = status
    return err


class Users:
    """The front's users, and the check of a request's credentials."""

    def __init__(self, users: Iterable[User]) -> None:
        self._users = {user.name: user for user in users}
        if not self._users:
            raise ValueError("the ClickHouse front needs at least one user")
        for user in self._users.values():
            if not user.password:
                raise ValueError(f"ClickHouse user {user.name!r} has no password")

    def __iter__(self):
        return iter(self._users.values())

    def authenticate(self, headers: Mapping[str, str], params: Mapping[str, str]) -> User:
        """The user the request's credentials name, or ClickHouseError 516 (401 when none were given)."""
        methods = []
        authorization = headers.get("authorization")
        if authorization is not None:
            methods.append(_basic(authorization))
        if "x-clickhouse-user" in headers or "x-clickhouse-key" in headers:
            methods.append((headers.get("x-clickhouse-user") or "default", headers.get("x-clickhouse-key", "")))
        if "user" in params or "password" in params:
            methods.append((params.get("user") or "default", params.get("password", "")))
        if len(methods) > 1:
            raise ClickHouseError(
                516, "Invalid authentication: it is not allowed to use more than one authentication method "
                "(Authorization header, X-ClickHouse-User/X-ClickHouse-Key headers, user/password parameters) "
                "at once.", "AUTHENTICATION_FAILED")
        name, password = methods[0] if methods else ("default", "")
        user = self._users.get(name)
        # Compare against something even for an unknown user, so timing does not tell names apart.
        expected = user.password if user is not None else "\0unknown user"
        if hmac.compare_digest(password.encode(), expected.encode()) and user is not None:
            return user
        raise _auth_failed(name, 401 if not methods else 403)


def _basic(value: str) -> tuple[str, str]:
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "basic":
        raise ClickHouseError(516, f"Invalid authentication: '{scheme}' HTTP Authorization scheme is not supported.",
                              "AUTHENTICATION_FAILED")
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise ClickHouseError(516, "Invalid authentication: malformed Basic credentials.",
                              "AUTHENTICATION_FAILED") from None
    name, _, password = decoded.partition(":")
    return name or "default", password


# --- what may run ------------------------------------------------------------------------

# Table functions and table engines that only compute or read this engine's own tables; every
# other one the engine knows (file, url, s3, remote, mysql, executable, python, ...) is refused.
SAFE_TABLE_FUNCTIONS = frozenset({
    "numbers", "numbers_mt", "zeros", "zeros_mt", "values", "null", "generaterandom", "generateseries",
    "generate_series", "primes", "sqlstandardvalues", "format", "view", "viewifpermitted", "viewexplain", "merge",
    "loop", "mergetreeindex", "mergetreeprojection", "mergetreeanalyzeindexes", "mergetreeanalyzeindexesuuid",
    "mergetreecodecblockcounts", "mergetreetextindex", "fuzzjson", "fuzzquery",
})
SAFE_ENGINES = frozenset({
    "memory", "log", "tinylog", "stripelog", "null", "buffer", "join", "set", "view", "materializedview",
    "dictionary", "merge", "generaterandom", "embeddedrocksdb", "keepermap", "alias", "loop", "timeseries",
})
# Ordinary functions that read files outside the engine's tables.
UNSAFE_FUNCTIONS = frozenset({"file", "catboostevaluate"})
# What a read-only user may read from: these table functions, and these tables of `system`.
READER_TABLE_FUNCTIONS = frozenset({
    "numbers", "numbers_mt", "zeros", "zeros_mt", "values", "null", "generaterandom", "generateseries",
    "generate_series", "primes", "sqlstandardvalues", "format",
})
READER_SYSTEM_TABLES = frozenset({
    "one", "numbers", "numbers_mt", "zeros", "zeros_mt", "databases", "tables", "columns", "functions", "settings",
    "formats", "data_type_families", "table_functions", "table_engines", "time_zones", "build_options",
    "collations", "keywords", "aggregate_function_combinators", "contributors", "licenses", "data_skipping_indices",
    "merge_tree_settings", "server_settings", "errors",
})
# Statements no user may run here: engine administration, backups to files/disks.
_FORBIDDEN = frozenset({"SYSTEM", "BACKUP", "RESTORE", "ATTACH", "KILL", "INSTALL"})
# What a read-only user may run at all (the engine refuses writes too; this keeps it to reads).
_READER_STATEMENTS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXISTS", "SET", "USE"})
# Settings a read-only user may not pass (the engine refuses lifting them too).
READER_FIXED_SETTINGS = frozenset({"readonly", "allow_ddl", "allow_introspection_functions"})


def denied_functions(table_functions: Iterable[str], engines: Iterable[str]) -> frozenset[str]:
    """Lower-case names refused in any statement: the engine's table functions and engines but
    the safe ones, and the unsafe ordinary functions."""
    denied = {name.lower() for name in table_functions} - SAFE_TABLE_FUNCTIONS
    denied |= {name.lower() for name in engines if not name.lower().endswith("mergetree")} - SAFE_ENGINES
    return frozenset(denied | UNSAFE_FUNCTIONS)


def access_denied(text: str) -> ClickHouseError:
    return ClickHouseError(497, text, "ACCESS_DENIED")


def check_statement(user: User, statement: Statement, query: str) -> None:
    """Refusals decided from the statement's words, before the engine sees it."""
    if statement.keyword in _FORBIDDEN:
        raise access_denied(f"{user.name}: Not enough privileges: {statement.keyword} statements are not allowed on "
                            "this server.")
    if any(word.upper() == "OUTFILE" for word in words(query)):
        raise ClickHouseError(358, "INTO OUTFILE is not allowed", "INTO_OUTFILE_NOT_ALLOWED")
    if user.readonly and statement.keyword not in _READER_STATEMENTS:
        raise ClickHouseError(164, f"{user.name}: Cannot execute query in readonly mode.", "READONLY")
    if user.readonly and statement.keyword == "SHOW" and any(w.upper() == "PROCESSLIST" for w in words(query)):
        raise access_denied(f"{user.name}: Not enough privileges: SHOW PROCESSLIST is not allowed.")


def check_settings(user: User, settings: Mapping[str, str]) -> None:
    if user.readonly:
        for name in settings:
            if name.lower() in READER_FIXED_SETTINGS:
                raise ClickHouseError(164, f"Cannot modify '{name}' setting in readonly mode.", "READONLY")


_AST_FUNCTION = re.compile(r"^\s*Function(?:WithKeyValueArguments)?\s+(\S+)", re.MULTILINE)


def check_ast(user: User, ast: str, denied: frozenset[str]) -> None:
    """Refuse a statement whose parse (`EXPLAIN AST`) calls a denied function, table function or engine."""
    for match in _AST_FUNCTION.finditer(ast):
        name = match.group(1)
        if name.lower() in denied and name.lower() not in user.allowed_functions:
            raise access_denied(f"{user.name}: Not enough privileges: '{name}' (files, URLs, other servers and "
                                "programs) is not allowed on this server.")
    if re.search(r"^\s*FunctionWithKeyValueArguments\s", ast, re.MULTILINE):
        raise access_denied(f"{user.name}: Not enough privileges: dictionary sources are not allowed on this server.")


_TREE_TABLE = re.compile(r"^\s*TABLE id: \d+.*?, table_name: ([^\s,]+)", re.MULTILINE)
_TREE_TABLE_FUNCTION = re.compile(r"^\s*TABLE_FUNCTION id: \d+.*?, table_function_name: ([^\s,]+)", re.MULTILINE)
_TREE_FUNCTION = re.compile(r"^\s*FUNCTION id: \d+, function_name: ([^\s,]+)", re.MULTILINE)


def check_tree(user: User, tree: str) -> None:
    """A read-only user's SELECT (its `EXPLAIN QUERY TREE`) reads only its databases, the catalog
    tables of `system` and harmless table functions."""
    allowed = user.databases or ()
    for name in _TREE_TABLE.findall(tree):
        database, _, table = name.partition(".")
        if "." in table or not (database in allowed or (database == "system" and table in READER_SYSTEM_TABLES)):
            raise access_denied(f"{user.name}: Not enough privileges. To execute this query, it's necessary to have "
                                f"the grant SELECT ON {name}.")
    for name in _TREE_TABLE_FUNCTION.findall(tree):
        if name.lower() not in READER_TABLE_FUNCTIONS:
            raise access_denied(f"{user.name}: Not enough privileges: table function '{name}' is not allowed.")
    for name in _TREE_FUNCTION.findall(tree):
        if name.lower().startswith(("dict", "joinget")):
            raise access_denied(f"{user.name}: Not enough privileges: function '{name}' is not allowed.")
