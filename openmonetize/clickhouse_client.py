"""The one place that knows ClickHouse credentials: who connects as whom, and the clients.

Two users, from the settings:

* the **writer** (CLICKHOUSE_USER / CLICKHOUSE_PASSWORD, or the user and password in
  CLICKHOUSE_URL): the ClickHouse sink, the migrations, the rebilling analytics writer,
  reconcile, the bench and test tooling;
* the **reader** (CLICKHOUSE_READER_USER / CLICKHOUSE_READER_PASSWORD): read-only, the
  `openmonetize` database only; the API's report routes, and what BI users are given.

When the stack runs its own ClickHouse front (`clickhouse` in STACK_SERVICES, CLICKHOUSE_URL on
loopback) and a password is
not set, it is drawn once and kept in STACK_DIR/secrets/clickhouse.json (mode 0600), where the
front and every client of the same stack find it; `openmonetize stack env` prints it. Against an
external ClickHouse nothing is generated: the writer is what the settings or the URL say (user
`default` without password if nothing does), and the reports use the writer when no reader
password is set.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from openmonetize.settings import Settings

Role = Literal["writer", "reader"]
LOCAL_WRITER = "openmonetize"


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str = field(repr=False)

    @property
    def basic_auth(self) -> tuple[str, str]:
        """For httpx: `httpx.get(url, auth=creds.basic_auth)`."""
        return self.user, self.password

    @property
    def headers(self) -> dict[str, str]:
        """ClickHouse's own credential headers."""
        return {"X-ClickHouse-User": self.user, "X-ClickHouse-Key": self.password}


def local_front(settings: Settings) -> bool:
    """CLICKHOUSE_URL is a front this stack runs (`clickhouse` in STACK_SERVICES, on loopback):
    one whose passwords it generates when unset."""
    host = urlsplit(settings.clickhouse_url).hostname or ""
    return "clickhouse" in settings.services and host in ("127.0.0.1", "localhost", "::1")


def secrets_file(settings: Settings) -> Path:
    return settings.stack_dir / "secrets" / "clickhouse.json"


def _generated(settings: Settings) -> dict[str, str]:
    """The stack's generated passwords, created on first use (race-free: the file is linked into
    place whole, and a process that loses the race reads the winner's)."""
    path = secrets_file(settings)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    drawn = {"writer_password": secrets.token_urlsafe(24), "reader_password": secrets.token_urlsafe(24)}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".clickhouse-")  # mode 0600
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(drawn, out)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
    finally:
        os.unlink(tmp)
    return json.loads(path.read_text())


def credentials(settings: Settings, role: Role = "writer") -> Credentials:
    url = urlsplit(settings.clickhouse_url)
    url_user, url_password = unquote(url.username or ""), unquote(url.password or "")
    local = local_front(settings)
    if role == "reader":
        if settings.clickhouse_reader_password:
            return Credentials(settings.clickhouse_reader_user, settings.clickhouse_reader_password)
        if local:
            return Credentials(settings.clickhouse_reader_user, _generated(settings)["reader_password"])
        return credentials(settings, "writer")
    user = settings.clickhouse_user or url_user or (LOCAL_WRITER if local else "default")
    password = settings.clickhouse_password or url_password
    if not password and local:
        password = _generated(settings)["writer_password"]
    return Credentials(user, password)


def base_url(settings: Settings) -> str:
    """CLICKHOUSE_URL without credentials in it (safe to print or log)."""
    url = urlsplit(settings.clickhouse_url)
    netloc = url.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if url.port:
        netloc += f":{url.port}"
    return url._replace(netloc=netloc).geturl().rstrip("/")


def _client_args(settings: Settings, role: Role, kwargs: dict[str, Any]) -> dict[str, Any]:
    creds = credentials(settings, role)
    return {"dsn": base_url(settings), "username": creds.user, "password": creds.password, **kwargs}


def get_client(settings: Settings, role: Role = "writer", **kwargs: Any):
    """clickhouse-connect's client at CLICKHOUSE_URL as `role` (kwargs as get_client's)."""
    import clickhouse_connect

    return clickhouse_connect.get_client(**_client_args(settings, role, kwargs))


async def get_async_client(settings: Settings, role: Role = "writer", **kwargs: Any):
    import clickhouse_connect

    return await clickhouse_connect.get_async_client(**_client_args(settings, role, kwargs))
