"""schemas/compatibility.py against Apache Avro's own ReaderWriterCompatibilityChecker.

Hypothesis draws a writer schema (records with nested records, enums, unions, arrays, maps and
every primitive) and a reader derived from it by the changes schemas really go through: fields
added or removed with and without defaults, int -> long -> float -> double promotions (and back),
string <-> bytes, branches added to or taken from unions, a type wrapped in or unwrapped from a
union with null, enum symbols added or removed with and without an enum default. Both
directions of each pair must get the same verdict from both checkers.

Out of the comparison on purpose: logical types (Avro's checker ignores them; ours refuses a
decimal whose precision or scale changes, see schemas/compatibility.py) and aliases.
"""

from __future__ import annotations

import json

import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.compatibility import can_read

PRIMITIVES = ("boolean", "int", "long", "float", "double", "string", "bytes")
NEIGHBOURS = {"int": ("long",), "long": ("int", "float"), "float": ("long", "double"), "double": ("float",),
              "string": ("bytes",), "bytes": ("string",), "boolean": ("int",)}
SYMBOLS = ("A", "B", "C", "D")
FIELD_NAMES = ("a", "b", "c", "d")

# A schema is built from plain values: a primitive name, ("enum", symbols, default or None),
# ("record", [(field name, type, has default)]), ("union", [branches]), ("array", items),
# ("map", values). Named types are named after their path, so each name is defined once.


def primitive():
    return st.sampled_from(PRIMITIVES)


def enum():
    symbols = st.lists(st.sampled_from(SYMBOLS), min_size=1, max_size=4, unique=True)
    return symbols.flatmap(lambda s: st.tuples(st.just("enum"), st.just(tuple(s)), st.none() | st.sampled_from(s)))


def union():
    """Distinct primitives (null among them), and at most one named type: an enum."""
    branches = st.lists(st.sampled_from(("null", *PRIMITIVES)), min_size=1, max_size=3, unique=True)
    named = st.lists(enum(), max_size=1)
    return st.tuples(st.just("union"), st.tuples(branches, named).map(lambda bn: tuple(bn[0] + bn[1])))


def avro_type(depth: int):
    simple = st.one_of(primitive(), primitive(), enum(), union(),
                       st.tuples(st.just("array"), primitive()), st.tuples(st.just("map"), primitive()))
    if depth >= 2:
        return simple
    return st.one_of(simple, record(depth + 1))


def record(depth: int = 0):
    fields = st.lists(st.tuples(st.sampled_from(FIELD_NAMES), avro_type(depth), st.booleans()),
                      min_size=1, max_size=4, unique_by=lambda f: f[0])
    return st.tuples(st.just("record"), fields.map(tuple))


@st.composite
def changed(draw, schema):
    """`schema` after some of the changes a new version makes."""
    if isinstance(schema, str):
        roll = draw(st.integers(0, 9))
        if roll < 5:
            return schema
        if roll < 8:
            return draw(st.sampled_from(NEIGHBOURS[schema]))
        if roll < 9:
            return ("union", ("null", schema))
        return draw(primitive())
    kind = schema[0]
    if kind == "enum":
        symbols, default = list(schema[1]), schema[2]
        if draw(st.booleans()):
            symbols += [s for s in SYMBOLS if s not in symbols][:1]  # a symbol added
        if len(symbols) > 1 and draw(st.booleans()):
            symbols.pop(draw(st.integers(0, len(symbols) - 1)))  # one taken away
        if draw(st.booleans()):
            default = draw(st.none() | st.sampled_from(symbols))
        return ("enum", tuple(symbols), default if default in symbols else None)
    if kind == "union":
        branches = list(schema[1])
        roll = draw(st.integers(0, 5))
        if roll == 0 and len(branches) == 1:
            return branches[0]  # unwrapped
        if roll == 1:
            extra = [b for b in ("null", *PRIMITIVES) if b not in branches]
            if extra:
                branches.insert(draw(st.integers(0, len(branches))), draw(st.sampled_from(extra)))
        elif roll == 2 and len(branches) > 1:
            branches.pop(draw(st.integers(0, len(branches) - 1)))
        elif roll == 3:
            i = draw(st.integers(0, len(branches) - 1))
            if isinstance(branches[i], tuple):
                branches[i] = draw(changed(branches[i]))
            elif branches[i] != "null":
                swap = draw(st.sampled_from(NEIGHBOURS[branches[i]]))
                if swap not in branches:
                    branches[i] = swap
        return ("union", tuple(branches))
    if kind in ("array", "map"):
        return (kind, draw(changed(schema[1])))
    fields = []
    for name, type_, has_default in schema[1]:
        roll = draw(st.integers(0, 9))
        if roll == 0 and len(schema[1]) > 1:
            continue  # removed
        if roll == 1:
            has_default = not has_default
        fields.append((name, draw(changed(type_)), has_default))
    unused = [n for n in FIELD_NAMES if n not in {f[0] for f in fields}]
    if unused and draw(st.booleans()):
        fields.append((unused[0], draw(avro_type(2)), draw(st.booleans())))  # added
    return ("record", tuple(fields))


def to_json(schema, path: str = "Root"):
    """The Avro JSON of a drawn schema."""
    if isinstance(schema, str):
        return schema
    kind = schema[0]
    if kind == "enum":
        out = {"type": "enum", "name": f"E_{path}", "symbols": list(schema[1])}
        if schema[2] is not None:
            out["default"] = schema[2]
        return out
    if kind == "union":
        return [to_json(b, f"{path}_e") for b in schema[1]]  # its one enum keeps its name whatever moves
    if kind == "array":
        return {"type": "array", "items": to_json(schema[1], f"{path}_items")}
    if kind == "map":
        return {"type": "map", "values": to_json(schema[1], f"{path}_values")}
    fields = []
    for name, type_, has_default in schema[1]:
        field = {"name": name, "type": to_json(type_, f"{path}_{name}")}
        if has_default:
            field["default"] = default_of(type_)
        fields.append(field)
    return {"type": "record", "name": path, "namespace": "om.test", "fields": fields}


def default_of(schema):
    """A valid default value of a type (a union's is its first branch's)."""
    if isinstance(schema, str):
        return {"null": None, "boolean": False, "int": 0, "long": 0, "float": 0.0, "double": 0.0,
                "string": "", "bytes": ""}[schema]
    kind = schema[0]
    if kind == "enum":
        return schema[1][0]
    if kind == "union":
        return default_of(schema[1][0])
    if kind == "array":
        return []
    if kind == "map":
        return {}
    return {name: default_of(type_) for name, type_, _ in schema[1]}


def avro_says(reader: dict, writer: dict) -> bool:
    result = ReaderWriterCompatibilityChecker().get_compatibility(
        avro.schema.parse(json.dumps(reader)), avro.schema.parse(json.dumps(writer)))
    return result.compatibility is SchemaCompatibilityType.compatible


@st.composite
def pairs(draw):
    writer = draw(record())
    return to_json(writer), to_json(draw(changed(writer)))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pairs())
def test_our_verdict_is_avros_both_ways(pair):
    old, new = pair
    for reader, writer in ((new, old), (old, new)):
        ours = can_read(reader, writer)
        assert (ours == []) == avro_says(reader, writer), (
            f"reader {json.dumps(reader)}\nwriter {json.dumps(writer)}\nours: {ours or 'compatible'}")


@settings(max_examples=300, deadline=None)
@given(record(), record())
def test_unrelated_schemas_get_avros_verdict(writer, reader):
    """Independently drawn schemas: mostly incompatible, which must be said for the same pairs."""
    writer, reader = to_json(writer), to_json(reader)
    assert (can_read(reader, writer) == []) == avro_says(reader, writer), (
        f"reader {json.dumps(reader)}\nwriter {json.dumps(writer)}")


def test_the_generator_reaches_both_verdicts():
    """A comparison that only ever saw compatible (or only incompatible) pairs would prove little."""
    seen = set()

    @settings(max_examples=200, deadline=None, database=None)
    @given(pairs())
    def collect(pair):
        old, new = pair
        seen.add(avro_says(new, old))

    collect()
    assert seen == {True, False}
