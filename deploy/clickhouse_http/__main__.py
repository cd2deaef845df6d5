"""Run the ClickHouse HTTP stand-in in the foreground.

    python -m deploy.clickhouse_http --host 127.0.0.1 --port 18123 --path ./data/clickhouse

Its users and passwords come from the settings (openmonetize/clickhouse_client.py: CLICKHOUSE_USER,
CLICKHOUSE_PASSWORD, CLICKHOUSE_READER_USER, CLICKHOUSE_READER_PASSWORD, generated under STACK_DIR
when unset); they are never taken from the command line, which other local users can read.

SIGTERM/SIGINT stop accepting requests, let in-flight ones finish, then close the engine so its
data is flushed to --path.
"""

from __future__ import annotations

import argparse
import os
import signal

import uvicorn

from deploy.clickhouse_http.access import User, Users
from deploy.clickhouse_http.engine import Engine
from deploy.clickhouse_http.server import ClickHouseHTTP
from openmonetize import logs, metrics
from openmonetize.clickhouse_client import credentials
from openmonetize.settings import Settings, get_settings


def front_users(settings: Settings) -> list[User]:
    """The users the local front serves: the writer, and the reader (read-only, CLICKHOUSE_DATABASE)."""
    writer, reader = credentials(settings, "writer"), credentials(settings, "reader")
    if reader.user == writer.user:
        raise ValueError(f"CLICKHOUSE_READER_USER must differ from the writer's user ({writer.user!r})")
    allowed = frozenset(name.strip().lower() for name in settings.clickhouse_writer_table_functions.split(",")
                        if name.strip()) - {"file", "url", "urlcluster", "filecluster", "executable", "python", "input"}
    return [User(writer.user, writer.password, allowed_functions=allowed),
            User(reader.user, reader.password, readonly=True, databases=(settings.clickhouse_database,))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.clickhouse_http",
        description="Serve an embedded ClickHouse engine (chdb) on ClickHouse's HTTP interface.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8123, help="TCP port (default: %(default)s)")
    parser.add_argument("--path", required=True, help="data directory of the engine (created if missing)")
    parser.add_argument("--workers", type=int, default=16,
                        help="threads running engine calls, i.e. queries executing at once (default: %(default)s)")
    parser.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "INFO"),
                        help="DEBUG logs one line per request (default: %(default)s)")
    parser.add_argument("--log-format", default="json", choices=["json", "console"])
    args = parser.parse_args(argv)

    logs.configure(args.log_level, args.log_format, service="clickhouse")
    metrics.describe_process("clickhouse")
    log = logs.get_logger("deploy.clickhouse_http")

    users = Users(front_users(get_settings()))
    os.makedirs(args.path, exist_ok=True)
    engine = Engine(args.path)
    config = uvicorn.Config(
        ClickHouseHTTP(engine, users, workers=args.workers),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="h11",
        lifespan="on",
        log_config=None,
        access_log=False,
        timeout_keep_alive=30,
        h11_max_incomplete_event_size=1024 * 1024,  # long URLs: settings and bound parameters
    )
    log.info("clickhouse_http_starting", host=args.host, port=args.port, path=args.path, version=engine.version,
             users={user.name: "read-only" if user.readonly else "writer" for user in users})
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then re-raises the signal to the handler
    # installed before it ran: make that an ordinary exit, so the engine gets closed below.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit)
    try:
        uvicorn.Server(config).run()
    finally:
        engine.close()
        log.info("clickhouse_http_stopped", path=args.path)


def _exit(signum: int, _frame: object) -> None:
    raise SystemExit(0)


if __name__ == "__main__":
    main()
