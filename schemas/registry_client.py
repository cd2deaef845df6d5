"""Where every codec of the pipeline gets its schema ids: ONE factory, two registries.

`open_registry(settings)` answers our own registry's Postgres store (schemas/registry.py, the
default) or, when SCHEMA_REGISTRY_URL is set, any Confluent-compatible registry (Confluent,
Karapace, Apicurio's ccompat API, or our API's on another deployment) through the stock
`confluent_kafka.schema_registry.SchemaRegistryClient`. Both have the interface codecs use:

    register(subject, schema_text) -> id      get-or-register: the id a subject holds it under
    lookup(subject, schema_text) -> (id, version)   RegistryError(404, ...) when it holds none
    schema_by_id(id) -> schema text           cached for the life of the object: ids never change

AvroCodec caches writer schemas per id as well, so the registry is asked once per unknown id,
never per record. Errors come as schemas.registry.RegistryError (the registry answered, with
Confluent's status and code) or RegistryUnreachable (it did not answer), whichever store is
behind, so callers retry or report the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from schemas.registry import RegistryError, SchemaRegistry


class CodecRegistry(Protocol):
    def register(self, subject: str, schema_str: str) -> int: ...

    def lookup(self, subject: str, schema_str: str) -> tuple[int, int]: ...

    def schema_by_id(self, schema_id: int) -> str: ...


class RegistryUnreachable(ConnectionError):
    """The registry at a URL did not answer (refused, timed out, DNS); the message names the URL."""


class HttpRegistry:
    """A Confluent-compatible registry over HTTP, through the stock SchemaRegistryClient."""

    def __init__(self, url: str, basic_auth_user_info: str = "", timeout_s: float = 10.0, max_retries: int = 3):
        from confluent_kafka.schema_registry import SchemaRegistryClient

        self.url = url.rstrip("/")
        conf = {"url": self.url, "timeout": timeout_s, "max.retries": max_retries,
                "retries.wait.ms": 200, "retries.max.wait.ms": 2000}
        if basic_auth_user_info:
            conf["basic.auth.user.info"] = basic_auth_user_info
        self.client = SchemaRegistryClient(conf)
        self._texts: dict[int, str] = {}

    def register(self, subject: str, schema_str: str) -> int:
        """The id under which `subject` holds this schema, registering it when it does not
        (a registry answers an already-registered schema with its id, as ours does)."""
        from confluent_kafka.schema_registry import Schema

        return self._call(self.client.register_schema, subject, Schema(schema_str, "AVRO"))

    def lookup(self, subject: str, schema_str: str) -> tuple[int, int]:
        from confluent_kafka.schema_registry import Schema

        found = self._call(self.client.lookup_schema, subject, Schema(schema_str, "AVRO"))
        return found.schema_id, found.version

    def schema_by_id(self, schema_id: int) -> str:
        if schema_id not in self._texts:
            self._texts[schema_id] = self._call(self.client.get_schema, schema_id).schema_str
        return self._texts[schema_id]

    def _call(self, method, *args):
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            return method(*args)
        except SchemaRegistryError as exc:
            raise RegistryError(exc.http_status_code, exc.error_code, exc.error_message) from exc
        except Exception as exc:  # noqa: BLE001 - httpx transport errors and the like, after the client's retries
            raise RegistryUnreachable(
                f"schema registry at {self.url} is unreachable ({type(exc).__name__}: {exc})") from exc

    def close(self) -> None:
        self.client.close()

    def __repr__(self) -> str:
        return f"HttpRegistry({self.url!r})"


class OneConnection:
    """One Postgres connection in the shape SchemaRegistry takes (a pool's `connection()`)."""

    def __init__(self, conn):
        self.conn = conn

    @contextmanager
    def connection(self):
        yield self.conn


def open_registry(settings, pool=None, *, url: str | None = None, timeout_s: float = 10.0,
                  max_retries: int = 3) -> CodecRegistry:
    """The registry the pipeline's codecs use under these settings.

    SCHEMA_REGISTRY_URL set: that registry over HTTP, with SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO.
    Empty: our Postgres store, on `pool` (a psycopg pool, or anything with its `connection()`),
    else on a small pool of its own. `url` forces HTTP to that URL (a producer client
    talks to our registry through the API, never to Postgres).
    """
    url = url or settings.schema_registry_url
    if url:
        # Another registry takes its own credential; our API's, its operator key, if this machine has it.
        auth = (settings.schema_registry_basic_auth_user_info if settings.schema_registry_url
                else settings.schema_registry_basic_auth)
        return HttpRegistry(url, auth, timeout_s, max_retries)
    if pool is None:
        from psycopg_pool import ConnectionPool

        pool = ConnectionPool(settings.database_url, min_size=0, max_size=2, open=True,
                              check=ConnectionPool.check_connection)
    return SchemaRegistry(pool)


@contextmanager
def registry_session(settings) -> Iterator[CodecRegistry]:
    """open_registry for one run of a tool, on one Postgres connection (an unreachable Postgres
    fails at once with psycopg.OperationalError), closed at the end."""
    if settings.schema_registry_url:
        registry = open_registry(settings)
        try:
            yield registry
        finally:
            registry.close()
        return
    import psycopg

    with psycopg.connect(settings.database_url, autocommit=True, connect_timeout=10) as conn:
        yield SchemaRegistry(OneConnection(conn))
