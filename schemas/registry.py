"""The schema registry's store: subjects, versions and global schema ids in Postgres.

Ids are global and content-addressed, as in Confluent's registry: the same schema gets the same
id under every subject. Ids never change and are never reused or deleted (records on Kafka carry
them), so `schema_by_id` is cached in memory for the life of the process.

A schema's identity is its JSON re-serialised compactly: whitespace does not matter, but key
order and every attribute do. Avro's Parsing Canonical Form is deliberately not used: it drops
defaults, aliases and logical types, so decimal(10,2) and decimal(12,2) would share an id and a
re-registration would skip the compatibility check. `normalize=True` (Confluent's flag) uses
fastavro's parsed form instead (full names, sorted keys), so textual variants share an id.

A schema's guid (Confluent's second identity, `/schemas/guids/{guid}`) is the first 16 bytes
of its fingerprint as a UUID: derived, stable, the same wherever the schema is registered.

Modes (`/mode`): READWRITE (the default), READONLY and READONLY_OVERRIDE, globally or per subject;
a read-only subject refuses new schemas and deletions with 42205 (a schema it already holds is
still answered with its id: nothing is written). IMPORT (registering with the ids of another
registry) is not offered and is refused with 42205.

Registrations under one subject are serialised by a transaction-scoped advisory lock on the
subject, so concurrent registrations of the same new schema end with one version; the unique
fingerprint (INSERT .. ON CONFLICT) makes id creation race-free across subjects and processes.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import TYPE_CHECKING

from schemas import compatibility

if TYPE_CHECKING:  # a producer client imports RegistryError without psycopg installed (core install)
    from psycopg_pool import ConnectionPool

DEFAULT_LEVEL = "BACKWARD"
DEFAULT_MODE = "READWRITE"
MODES = ("READWRITE", "READONLY", "READONLY_OVERRIDE")  # IMPORT is refused: this registry assigns ids
_READ_ONLY = ("READONLY", "READONLY_OVERRIDE")
_GLOBAL = ""  # the registry_config row of the global level
_LOCK_CLASS = 0x5352  # first key of the two-key advisory lock taken on a subject ("SR")
_MAX_VERSION = 2**31 - 1


class RegistryError(Exception):
    """An error with Confluent's HTTP status and error code (e.g. 404/40401 subject not found)."""

    def __init__(self, http_status: int, error_code: int, message: str):
        super().__init__(message)
        self.http_status = http_status
        self.error_code = error_code
        self.message = message


def _subject_not_found(subject: str) -> RegistryError:
    return RegistryError(404, 40401, f"Subject '{subject}' not found.")


def _version_not_found(subject: str, version: int | str) -> RegistryError:
    return RegistryError(404, 40402, f"Version {version} not found for subject '{subject}'.")


def _invalid_schema(reason: str) -> RegistryError:
    return RegistryError(422, 42201, f"Invalid schema: {reason}")


class _Setting:
    """A per-subject setting with a global value (subject ''): compatibility levels, modes."""

    def __init__(self, table: str, column: str, default: str, missing_code: int, what: str):
        self.default, self.missing_code, self.what = default, missing_code, what
        self.select_own = f"SELECT {column} FROM {table} WHERE subject = %s"
        self.select_in_force = (f"SELECT {column} FROM {table} WHERE subject IN (%s, %s)"
                                " ORDER BY subject DESC LIMIT 1")
        self.upsert = (f"INSERT INTO {table} (subject, {column}) VALUES (%s, %s) ON CONFLICT (subject)"
                       f" DO UPDATE SET {column} = excluded.{column}, updated_at = now()")
        self.delete = f"DELETE FROM {table} WHERE subject = %s RETURNING {column}"

    def in_force(self, conn, subject: str) -> str:
        """The subject's own value, else the global one, else the default."""
        row = conn.execute(self.select_in_force, (subject, _GLOBAL)).fetchone()
        return row[0] if row else self.default

    def missing(self, subject: str) -> RegistryError:
        return RegistryError(404, self.missing_code, f"Subject '{subject}' does not have subject-level {self.what} configured")


_LEVEL = _Setting("registry_config", "compatibility", DEFAULT_LEVEL, 40408, "compatibility")
_MODE = _Setting("registry_mode", "mode", DEFAULT_MODE, 40409, "mode")


class SchemaRegistry:
    def __init__(self, pool: ConnectionPool):
        self.pool = pool
        self._texts: dict[int, str] = {}  # schema id -> schema text; ids are immutable

    # --- schemas and versions ------------------------------------------------------------

    def register(
        self,
        subject: str,
        schema_str: str,
        schema_type: str | None = "AVRO",
        normalize: bool = False,
        references: list | None = None,
    ) -> int:
        """Register a schema under a subject (a new version if the subject does not have it yet); its id."""
        text, fingerprint = _prepare(schema_str, schema_type, references, normalize)
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_LOCK_CLASS, subject))
            row = conn.execute(
                "SELECT s.id FROM registry_subject_versions v JOIN registry_schemas s ON s.id = v.schema_id"
                " WHERE v.subject = %s AND s.fingerprint = %s AND NOT v.deleted",
                (subject, fingerprint),
            ).fetchone()
            if row:
                return row[0]
            self._check_writable(conn, subject)
            level = _LEVEL.in_force(conn, subject)
            problems = compatibility.check(level, text, self._live_texts(conn, subject))
            if problems:
                raise RegistryError(
                    409,
                    409,
                    f"Schema being registered is incompatible with an earlier schema for subject '{subject}'"
                    f" ({level}), details: " + "; ".join(problems),
                )
            schema_id = conn.execute(
                "INSERT INTO registry_schemas (schema_text, fingerprint) VALUES (%s, %s)"
                " ON CONFLICT (fingerprint) DO NOTHING RETURNING id",
                (text, fingerprint),
            ).fetchone()
            if schema_id is None:  # registered before, under another subject
                schema_id = conn.execute(
                    "SELECT id FROM registry_schemas WHERE fingerprint = %s", (fingerprint,)
                ).fetchone()
            conn.execute(
                "INSERT INTO registry_subject_versions (subject, version, schema_id)"
                " SELECT %s, coalesce(max(version), 0) + 1, %s FROM registry_subject_versions WHERE subject = %s",
                (subject, schema_id[0], subject),
            )
            return schema_id[0]

    def schema_by_id(self, schema_id: int) -> str:
        if schema_id not in self._texts:
            with self.pool.connection() as conn:
                row = conn.execute("SELECT schema_text FROM registry_schemas WHERE id = %s", (schema_id,)).fetchone()
            if row is None:
                raise RegistryError(404, 40403, f"Schema {schema_id} not found.")
            self._texts[schema_id] = row[0]
        return self._texts[schema_id]

    def schema_versions(self, schema_id: int, deleted: bool = False) -> list[tuple[str, int]]:
        """The (subject, version) pairs that hold a schema."""
        self.schema_by_id(schema_id)  # 40403 when there is no such schema
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT subject, version FROM registry_subject_versions"
                " WHERE schema_id = %s AND (%s OR NOT deleted) ORDER BY subject, version",
                (schema_id, deleted),
            ).fetchall()
        return [(subject, version) for subject, version in rows]

    def lookup(
        self,
        subject: str,
        schema_str: str,
        schema_type: str | None = "AVRO",
        normalize: bool = False,
        deleted: bool = False,
    ) -> tuple[int, int]:
        """The (id, version) under which a subject holds this schema (its latest such version)."""
        _, fingerprint = _prepare(schema_str, schema_type, None, normalize)
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT v.schema_id, max(v.version) FROM registry_subject_versions v"
                " JOIN registry_schemas s ON s.id = v.schema_id"
                " WHERE v.subject = %s AND s.fingerprint = %s AND (%s OR NOT v.deleted) GROUP BY v.schema_id",
                (subject, fingerprint, deleted),
            ).fetchone()
            if row:
                return row[0], row[1]
            if not self._has_subject(conn, subject, deleted):
                raise _subject_not_found(subject)
        raise RegistryError(404, 40403, f"Schema not found under subject '{subject}'.")

    def version(self, subject: str, version: int | str, deleted: bool = False) -> tuple[int, int, str]:
        """(id, version, schema text) of a version number or "latest"."""
        number = _parse_version(version)
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT version, schema_id FROM registry_subject_versions"
                " WHERE subject = %s AND (%s::integer IS NULL OR version = %s) AND (%s OR NOT deleted)"
                " ORDER BY version DESC LIMIT 1",
                (subject, number, number, deleted),
            ).fetchone()
            if row is None:
                if not self._has_subject(conn, subject, deleted):
                    raise _subject_not_found(subject)
                raise _version_not_found(subject, version)
        return row[1], row[0], self.schema_by_id(row[1])

    def subjects(self, deleted: bool = False, deleted_only: bool = False, prefix: str = "") -> list[str]:
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT DISTINCT subject FROM registry_subject_versions"
                " WHERE deleted = ANY(%s) AND starts_with(subject, %s) ORDER BY subject",
                (_states(deleted, deleted_only), prefix),
            ).fetchall()
        return [r[0] for r in rows]

    def versions(self, subject: str, deleted: bool = False, deleted_only: bool = False) -> list[int]:
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT version FROM registry_subject_versions WHERE subject = %s AND deleted = ANY(%s)"
                " ORDER BY version",
                (subject, _states(deleted, deleted_only)),
            ).fetchall()
        if not rows:
            raise _subject_not_found(subject)
        return [r[0] for r in rows]

    def compatibility(
        self,
        subject: str,
        schema_str: str,
        version: int | str | None = "latest",
        schema_type: str | None = "AVRO",
        normalize: bool = False,
    ) -> list[str]:
        """Incompatibilities of a schema with one version of a subject, or (version None) with the
        versions its compatibility level checks on registration."""
        text, _ = _prepare(schema_str, schema_type, None, normalize)
        if version is None:
            with self.pool.connection() as conn:
                existing = self._live_texts(conn, subject)
        else:
            existing = [self.version(subject, version)[2]]
        return compatibility.check(self.get_config(subject, default_to_global=True), text, existing)

    def delete_subject(self, subject: str, permanent: bool = False) -> list[int]:
        """Soft-delete a subject's versions (ids stay resolvable); `permanent` then removes the
        soft-deleted versions (the schemas and their ids stay). The versions affected."""
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_LOCK_CLASS, subject))
            self._check_writable(conn, subject)
            if permanent:
                if self._has_subject(conn, subject, deleted=False):
                    raise RegistryError(
                        404, 40405, f"Subject '{subject}' was not deleted first before being permanently deleted."
                    )
                sql = "DELETE FROM registry_subject_versions WHERE subject = %s RETURNING version"
            else:
                sql = (
                    "UPDATE registry_subject_versions SET deleted = true"
                    " WHERE subject = %s AND NOT deleted RETURNING version"
                )
            versions = sorted(r[0] for r in conn.execute(sql, (subject,)))
        if not versions:
            raise _subject_not_found(subject)
        return versions

    # --- compatibility levels ------------------------------------------------------------

    def get_config(self, subject: str | None = None, default_to_global: bool = False) -> str:
        """A subject's level (40408 when it has none, unless `default_to_global`), or the global level."""
        return self._get(_LEVEL, subject, default_to_global)

    def set_config(self, subject: str | None, level: str) -> str:
        if not isinstance(level, str) or level.upper() not in compatibility.LEVELS:
            raise RegistryError(
                422, 42203, f"Invalid compatibility level {level!r}; valid: {', '.join(compatibility.LEVELS)}"
            )
        return self._set(_LEVEL, subject, level.upper())

    def delete_config(self, subject: str) -> str:
        """Drop a subject's own level (it follows the global one again); the level it had."""
        return self._delete(_LEVEL, subject, _LEVEL.missing(subject))

    # --- guids and metadata ---------------------------------------------------------------

    def schema_by_guid(self, guid: str) -> tuple[int, str]:
        """(id, text) of the schema with this guid (see guid_of)."""
        try:
            prefix = uuid.UUID(guid).bytes
        except ValueError:
            raise RegistryError(404, 40403, f"Schema {guid} not found: not a guid") from None
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT id, schema_text FROM registry_schemas WHERE substring(fingerprint FROM 1 FOR 16) = %s",
                (prefix,),
            ).fetchone()
        if row is None:
            raise RegistryError(404, 40403, f"Schema {guid} not found.")
        return row[0], row[1]

    def latest_with_metadata(self, subject: str, metadata: dict[str, str], deleted: bool = False) -> tuple[int, int, str]:
        """(id, version, text) of the subject's latest version whose metadata has these entries.
        This registry keeps no schema metadata: only an empty selection finds a version."""
        schema_id, version, text = self.version(subject, "latest", deleted)  # 40401 for an unknown subject
        if metadata:
            wanted = ", ".join(f"{k}={v}" for k, v in metadata.items())
            raise RegistryError(404, 40403, f"No schema under subject '{subject}' has the metadata {wanted}"
                                            " (this registry stores no schema metadata).")
        return schema_id, version, text

    # --- modes ---------------------------------------------------------------------------

    def get_mode(self, subject: str | None = None, default_to_global: bool = False) -> str:
        """A subject's mode (40409 when it has none, unless `default_to_global`), or the global mode."""
        return self._get(_MODE, subject, default_to_global)

    def set_mode(self, subject: str | None, mode: str) -> str:
        if isinstance(mode, str) and mode.upper() == "IMPORT":
            raise RegistryError(422, 42205, "Operation not permitted: IMPORT mode is not supported, this registry"
                                            " assigns schema ids itself")
        if not isinstance(mode, str) or mode.upper() not in MODES:
            raise RegistryError(422, 42204, f"Invalid mode {mode!r}; valid: {', '.join(MODES)}")
        return self._set(_MODE, subject, mode.upper())

    def delete_mode(self, subject: str) -> str:
        """Drop a subject's own mode (it follows the global one again); the mode it had."""
        return self._delete(_MODE, subject, _subject_not_found(subject))  # Confluent answers 40401 here

    # --- per-subject settings (levels, modes) ----------------------------------------------

    def _get(self, setting: _Setting, subject: str | None, default_to_global: bool) -> str:
        with self.pool.connection() as conn:
            if subject and not default_to_global:
                row = conn.execute(setting.select_own, (subject,)).fetchone()
                if row is None:
                    raise setting.missing(subject)
                return row[0]
            return setting.in_force(conn, subject or _GLOBAL)

    def _set(self, setting: _Setting, subject: str | None, value: str) -> str:
        with self.pool.connection() as conn:
            conn.execute(setting.upsert, (subject or _GLOBAL, value))
        return value

    def _delete(self, setting: _Setting, subject: str, missing: RegistryError) -> str:
        with self.pool.connection() as conn:
            row = conn.execute(setting.delete, (subject,)).fetchone()
        if row is None:
            raise missing
        return row[0]

    # --- helpers -------------------------------------------------------------------------

    @staticmethod
    def _check_writable(conn, subject: str) -> None:
        mode = _MODE.in_force(conn, subject)
        if mode in _READ_ONLY:
            raise RegistryError(422, 42205, f"Subject '{subject}' is in read-only mode ({mode})")

    @staticmethod
    def _live_texts(conn, subject: str) -> list[str]:
        """The schema texts of a subject's versions that are not deleted, oldest first."""
        rows = conn.execute(
            "SELECT s.schema_text FROM registry_subject_versions v JOIN registry_schemas s ON s.id = v.schema_id"
            " WHERE v.subject = %s AND NOT v.deleted ORDER BY v.version",
            (subject,),
        )
        return [r[0] for r in rows]

    @staticmethod
    def _has_subject(conn, subject: str, deleted: bool) -> bool:
        return bool(
            conn.execute(
                "SELECT 1 FROM registry_subject_versions WHERE subject = %s AND (%s OR NOT deleted) LIMIT 1",
                (subject, deleted),
            ).fetchone()
        )


def guid_of(schema_text: str) -> str:
    """A stored schema's guid: the first 16 bytes of its fingerprint (SHA-256 of its text) as a UUID."""
    return str(uuid.UUID(bytes=hashlib.sha256(schema_text.encode()).digest()[:16]))


def _states(deleted: bool, deleted_only: bool) -> list[bool]:
    """The values of the `deleted` column a listing includes (Confluent's `deleted`, `deleted_only`)."""
    return [True] if deleted_only else [True, False] if deleted else [False]


def _parse_version(version: int | str) -> int | None:
    """A version number, or None for "latest" (also spelt -1, as Confluent accepts)."""
    if version in ("latest", "-1", -1):
        return None
    try:
        number = int(version)
    except (TypeError, ValueError):
        number = 0
    if not 1 <= number <= _MAX_VERSION:
        raise RegistryError(
            422,
            42202,
            f"The specified version '{version}' is not a valid version id."
            f' Allowed values are between [1, {_MAX_VERSION}] and the string "latest"',
        )
    return number


def _prepare(schema_str: str, schema_type: str | None, references: list | None, normalize: bool) -> tuple[str, bytes]:
    """Validate a schema submitted for registration or lookup; its stored text and fingerprint."""
    if (schema_type or "AVRO").upper() != "AVRO":
        raise _invalid_schema(f"schema type {schema_type} is not supported, only AVRO is")
    if references:
        raise _invalid_schema("schema references are not supported; define the named types inline")
    if not isinstance(schema_str, str):
        raise _invalid_schema("'schema' must be the schema's JSON text, as a string")
    try:
        parsed = compatibility.parse(schema_str)
    except compatibility.InvalidSchema as exc:
        raise _invalid_schema(str(exc)) from None
    if normalize:
        text = json.dumps(parsed.schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    else:
        text = json.dumps(json.loads(schema_str), separators=(",", ":"), ensure_ascii=False)
    return text, hashlib.sha256(text.encode()).digest()
