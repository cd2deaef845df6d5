"""Avro schema compatibility by Avro's schema-resolution rules, for the schema registry.

Pure: no I/O. fastavro parses and validates (and qualifies every name); the resolution walk is
ours, on the parsed JSON, because fastavro only resolves at read time, record by record, and
cannot say *why* two schemas do not fit. `can_read(reader, writer)` lists what a reader could
not resolve in data written with the writer schema; `check(level, new, existing)` applies a
Confluent compatibility level. Logical types follow their underlying type, except decimals,
whose precision and scale must match (the same bytes mean another number otherwise).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import fastavro.schema

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
LEVELS = (
    "NONE",
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
)
_COMPLEX = frozenset({"record", "error", "enum", "fixed", "array", "map"})
_NAMED = frozenset({"record", "error", "enum", "fixed"})
_KNOWN = PRIMITIVES | _COMPLEX
# writer type -> reader types that can read it (Avro's promotions)
_PROMOTIONS = {
    "int": {"long", "float", "double"},
    "long": {"float", "double"},
    "float": {"double"},
    "string": {"bytes"},
    "bytes": {"string"},
}


class InvalidSchema(ValueError):
    """The text is not a valid Avro schema."""


@dataclass(frozen=True)
class Parsed:
    """A schema as fastavro parsed it (full names, each named type defined once) and its named types."""

    schema: Any
    names: dict[str, Any]


def parse(schema: dict | list | str) -> Parsed:
    """Parse and validate a schema given as JSON text or as its decoded JSON value."""
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except ValueError as exc:
            raise InvalidSchema(f"the schema is not valid JSON: {exc}") from None
    names: dict[str, Any] = {}
    try:
        parsed = fastavro.schema.parse_schema(schema, named_schemas=names, _write_hint=False)
    except Exception as exc:  # noqa: BLE001 - fastavro raises several types for bad schemas
        raise InvalidSchema(f"{type(exc).__name__}: {exc}") from None
    return Parsed(parsed, names)


def can_read(reader: dict | list | str, writer: dict | list | str) -> list[str]:
    """What a reader with `reader` could not resolve in data written with `writer` (empty: compatible)."""
    return _can_read(parse(reader), parse(writer))


def check(level: str, new: dict | list | str, existing_versions: list) -> list[str]:
    """Incompatibilities of `new` with the existing schemas (oldest first) under a compatibility level.

    BACKWARD: the new schema reads data written with the latest one; FORWARD: the latest reads
    data written with the new one; FULL: both. *_TRANSITIVE: against every existing schema.
    """
    if level not in LEVELS:
        raise ValueError(f"unknown compatibility level {level!r}; known: {', '.join(LEVELS)}")
    if level == "NONE" or not existing_versions:
        return []
    new_schema = parse(new)
    others = existing_versions if level.endswith("_TRANSITIVE") else existing_versions[-1:]
    which = "an existing schema" if level.endswith("_TRANSITIVE") else "the latest schema"
    problems: list[str] = []
    for old in map(parse, others):
        if level.startswith(("BACKWARD", "FULL")):
            backward = _can_read(new_schema, old)
            problems += [f"the new schema cannot read data written with {which}: {m}" for m in backward]
        if level.startswith(("FORWARD", "FULL")):
            forward = _can_read(old, new_schema)
            problems += [f"{which} cannot read data written with the new schema: {m}" for m in forward]
    return list(dict.fromkeys(problems))


def _can_read(reader: Parsed, writer: Parsed) -> list[str]:
    walk = _Walk(reader.names, writer.names)
    root = _deref(reader.schema, reader.names)
    walk.read(reader.schema, writer.schema, _short_name(root["name"]) if _kind(root) in _NAMED else "schema")
    return walk.errors


class _Walk:
    """One resolution of a reader schema against a writer schema, collecting errors by path."""

    def __init__(self, reader_names: dict[str, Any], writer_names: dict[str, Any]):
        self.reader_names = reader_names
        self.writer_names = writer_names
        self.in_progress: set[tuple[str, str]] = set()  # record pairs being resolved (recursive types)
        self.errors: list[str] = []

    def read(self, reader: Any, writer: Any, at: str) -> None:
        reader, writer = _deref(reader, self.reader_names), _deref(writer, self.writer_names)
        if isinstance(writer, list):  # the writer may have written any of its branches
            for branch in writer:
                self.read(reader, branch, at)
        elif isinstance(reader, list):
            self._into_union(reader, writer, at)
        elif _kind(writer) in PRIMITIVES or _kind(reader) in PRIMITIVES:
            self._primitive(reader, writer, at)
        elif _kind(reader) != _kind(writer) and {_kind(reader), _kind(writer)} != {"record", "error"}:
            self._mismatch(reader, writer, at)
        elif not _same_name(reader, writer):
            self.errors.append(
                f"{at}: writer {_describe(writer)} cannot be read as {_describe(reader)}"
                " (the names differ and no reader alias matches)"
            )
        else:
            getattr(self, f"_{_kind(reader)}")(reader, writer, at)

    def _into_union(self, reader: list, writer: Any, at: str) -> None:
        """The first reader branch that matches the writer type is resolved against it (Avro spec)."""
        candidates = [b for b in reader if _matches(_deref(b, self.reader_names), writer)]
        for branch in candidates:
            errors = self._attempt(branch, writer, at)
            if not errors:
                return
        if candidates:
            self.errors += self._attempt(candidates[0], writer, at)
        else:
            self.errors.append(
                f"{at}: writer type {_describe(writer)} matches no branch of the reader {_describe(reader)}"
            )

    def _attempt(self, reader: Any, writer: Any, at: str) -> list[str]:
        saved, self.errors = self.errors, []
        try:
            self.read(reader, writer, at)
            return self.errors
        finally:
            self.errors = saved

    def _primitive(self, reader: Any, writer: Any, at: str) -> None:
        if _kind(reader) != _kind(writer) and _kind(reader) not in _PROMOTIONS.get(_kind(writer), ()):
            self._mismatch(reader, writer, at)
        else:
            self._decimal(reader, writer, at)

    def _decimal(self, reader: Any, writer: Any, at: str) -> None:
        r, w = _decimal_of(reader), _decimal_of(writer)
        if r and w and r != w:
            self.errors.append(
                f"{at}: writer {_describe(writer)} cannot be read as {_describe(reader)}"
                " (decimal precision and scale must match)"
            )

    def _mismatch(self, reader: Any, writer: Any, at: str) -> None:
        self.errors.append(f"{at}: writer type {_describe(writer)} cannot be read as {_describe(reader)}")

    def _record(self, reader: dict, writer: dict, at: str) -> None:
        pair = (reader["name"], writer["name"])
        if pair in self.in_progress:  # a recursive reference: being checked further up
            return
        self.in_progress.add(pair)
        written = {field["name"]: field for field in writer["fields"]}
        for field in reader["fields"]:
            source = next((written[n] for n in (field["name"], *field.get("aliases", ())) if n in written), None)
            if source is not None:
                self.read(field["type"], source["type"], f"{at}.{field['name']}")
            elif "default" not in field:
                self.errors.append(
                    f"field '{field['name']}' of {at} has no default and is missing from the writer schema"
                )
        self.in_progress.discard(pair)

    _error = _record

    def _enum(self, reader: dict, writer: dict, at: str) -> None:
        missing = [s for s in writer["symbols"] if s not in reader["symbols"]]
        if missing and "default" not in reader:
            symbols = ", ".join(f"'{s}'" for s in missing)
            self.errors.append(
                f"{at}: writer symbol(s) {symbols} of enum {_short_name(writer['name'])} are missing"
                " from the reader enum, which has no default"
            )

    def _fixed(self, reader: dict, writer: dict, at: str) -> None:
        if reader["size"] != writer["size"]:
            self.errors.append(
                f"{at}: writer fixed {_short_name(writer['name'])} has size {writer['size']},"
                f" the reader's has size {reader['size']}"
            )
        else:
            self._decimal(reader, writer, at)

    def _array(self, reader: dict, writer: dict, at: str) -> None:
        self.read(reader["items"], writer["items"], f"{at}[]")

    def _map(self, reader: dict, writer: dict, at: str) -> None:
        self.read(reader["values"], writer["values"], f"{at}{{}}")


def _deref(schema: Any, names: dict[str, Any]) -> Any:
    """Follow named references and `{"type": <another type>}` wrappers to a concrete type."""
    while True:
        if isinstance(schema, str) and schema not in PRIMITIVES:
            schema = names[schema]
        elif isinstance(schema, dict) and not (isinstance(schema["type"], str) and schema["type"] in _KNOWN):
            schema = schema["type"]
        else:
            return schema


def _kind(schema: Any) -> str:
    if isinstance(schema, list):
        return "union"
    return schema if isinstance(schema, str) else schema["type"]


def _matches(reader: Any, writer: Any) -> bool:
    """Whether a reader union branch is the one Avro resolves the writer type against."""
    if isinstance(reader, list):
        return False
    r, w = _kind(reader), _kind(writer)
    if r in _NAMED and w in _NAMED:
        return r == w and _same_name(reader, writer)
    return r == w or r in _PROMOTIONS.get(w, ())


def _same_name(reader: Any, writer: Any) -> bool:
    """Named types match by unqualified name, or by the writer's full name among the reader's aliases."""
    if _kind(reader) not in _NAMED:
        return True
    if _short_name(reader["name"]) == _short_name(writer["name"]):
        return True
    namespace = reader["name"].rpartition(".")[0]
    aliases = {a if "." in a or not namespace else f"{namespace}.{a}" for a in reader.get("aliases", ())}
    return writer["name"] in aliases


def _short_name(full_name: str) -> str:
    return full_name.rpartition(".")[2]


def _decimal_of(schema: Any) -> tuple[int, int] | None:
    if isinstance(schema, dict) and schema.get("logicalType") == "decimal":
        return schema.get("precision"), schema.get("scale", 0)
    return None


def _describe(schema: Any) -> str:
    """A short human form of a type: 'long', decimal(10,2), record UsageEvent, union ['null', 'string']."""
    if isinstance(schema, list):
        return "union [" + ", ".join(map(_describe, schema)) + "]"
    if isinstance(schema, str):
        return f"'{_short_name(schema)}'"
    kind = schema["type"]
    if _decimal_of(schema):
        precision, scale = _decimal_of(schema)
        return f"decimal({precision},{scale})"
    if kind in _NAMED:
        return f"{kind} {_short_name(schema['name'])}"
    if kind == "array":
        return "array"
    if kind == "map":
        return "map"
    return f"'{kind}'"
