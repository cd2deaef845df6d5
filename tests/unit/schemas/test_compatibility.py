"""Avro compatibility by the schema-resolution rules: one small case per rule, both ways."""

from __future__ import annotations

import json

import pytest

from schemas.compatibility import LEVELS, InvalidSchema, can_read, check


def record(*fields, name="UsageEvent", **extra):
    return {"type": "record", "name": name, "namespace": "om.usage", "fields": list(fields), **extra}


def field(name, type_, **extra):
    return {"name": name, "type": type_, **extra}


def decimal(precision, scale, base="bytes"):
    return {"type": base, "logicalType": "decimal", "precision": precision, "scale": scale}


def enum(*symbols, **extra):
    return {"type": "enum", "name": "Unit", "symbols": list(symbols), **extra}


V1 = record(field("id", "string"), field("quantity", "int"))


# --- records -------------------------------------------------------------------------------


def test_identical_schemas_are_compatible_both_ways():
    assert can_read(V1, V1) == [] and can_read(json.dumps(V1), json.dumps(V1)) == []


def test_adding_a_field_with_a_default_is_backward_and_forward_compatible():
    v2 = record(*V1["fields"], field("region", "string", default="eu"))
    assert check("BACKWARD", v2, [V1]) == []
    assert check("FORWARD", v2, [V1]) == []  # old readers ignore the new field


def test_adding_a_field_without_a_default_is_not_backward_compatible():
    v2 = record(*V1["fields"], field("region", "string"))
    assert can_read(v2, V1) == ["field 'region' of UsageEvent has no default and is missing from the writer schema"]
    assert check("FORWARD", v2, [V1]) == []


def test_removing_a_field_is_backward_compatible_and_forward_only_if_it_had_a_default():
    without = record(field("id", "string"))
    assert check("BACKWARD", without, [V1]) == []
    problems = check("FORWARD", without, [V1])
    assert len(problems) == 1 and "field 'quantity' of UsageEvent has no default" in problems[0]
    with_default = record(field("id", "string"), field("quantity", "int", default=0))
    assert check("FORWARD", without, [with_default]) == []


def test_a_field_is_found_by_its_alias():
    renamed = record(field("id", "string"), field("units", "int", aliases=["quantity"]))
    assert can_read(renamed, V1) == []


def test_records_with_different_names_do_not_match_unless_aliased():
    other = record(*V1["fields"], name="Other")
    assert "names differ" in can_read(other, V1)[0]
    assert can_read(record(*V1["fields"], name="Other", aliases=["UsageEvent"]), V1) == []


def test_a_nested_record_change_names_the_path():
    cost = {"type": "record", "name": "Cost", "fields": [field("amount", "double")]}
    cost_v2 = {**cost, "fields": [field("amount", "double"), field("currency", "string")]}
    problems = can_read(record(field("cost", cost_v2)), record(field("cost", cost)))
    assert problems == ["field 'currency' of UsageEvent.cost has no default and is missing from the writer schema"]


# --- primitives and promotions -----------------------------------------------------------


@pytest.mark.parametrize(
    ("writer", "reader"),
    [("int", "long"), ("int", "float"), ("int", "double"), ("long", "float"), ("long", "double"),
     ("float", "double"), ("string", "bytes"), ("bytes", "string")],
)
def test_promotions_are_readable(writer, reader):
    assert can_read(record(field("x", reader)), record(field("x", writer))) == []


@pytest.mark.parametrize(
    ("writer", "reader"), [("long", "int"), ("double", "float"), ("float", "long"), ("string", "int")]
)
def test_narrowing_or_unrelated_types_are_not(writer, reader):
    assert can_read(record(field("x", reader)), record(field("x", writer))) == [
        f"UsageEvent.x: writer type '{writer}' cannot be read as '{reader}'"
    ]


def test_widening_int_to_long_is_backward_but_not_forward_compatible():
    v2 = record(field("id", "string"), field("quantity", "long"))
    assert check("BACKWARD", v2, [V1]) == []
    assert check("FORWARD", v2, [V1]) == [
        "the latest schema cannot read data written with the new schema:"
        " UsageEvent.quantity: writer type 'long' cannot be read as 'int'"
    ]


# --- enums ---------------------------------------------------------------------------------


def test_adding_an_enum_symbol_is_backward_compatible_but_not_forward():
    old, new = record(field("unit", enum("TOKEN"))), record(field("unit", enum("TOKEN", "IMAGE")))
    assert check("BACKWARD", new, [old]) == []
    assert "symbol(s) 'IMAGE' of enum Unit are missing from the reader enum" in check("FORWARD", new, [old])[0]


def test_removing_an_enum_symbol_is_not_backward_compatible():
    old, new = record(field("unit", enum("TOKEN", "IMAGE"))), record(field("unit", enum("TOKEN")))
    assert "UsageEvent.unit: writer symbol(s) 'IMAGE'" in check("BACKWARD", new, [old])[0]


def test_a_reader_enum_default_absorbs_unknown_symbols():
    reader = record(field("unit", enum("TOKEN", "OTHER", default="OTHER")))
    assert can_read(reader, record(field("unit", enum("TOKEN", "IMAGE")))) == []


# --- unions --------------------------------------------------------------------------------


def test_adding_a_union_branch_is_backward_compatible_but_not_forward():
    old = record(field("note", ["null", "string"], default=None))
    new = record(field("note", ["null", "string", "int"], default=None))
    assert check("BACKWARD", new, [old]) == []
    assert check("FORWARD", new, [old]) == [
        "the latest schema cannot read data written with the new schema:"
        " UsageEvent.note: writer type 'int' matches no branch of the reader union ['null', 'string']"
    ]


def test_removing_a_union_branch_is_not_backward_compatible():
    old = record(field("note", ["null", "string", "int"], default=None))
    new = record(field("note", ["null", "string"], default=None))
    assert len(check("BACKWARD", new, [old])) == 1


def test_a_plain_writer_type_reads_into_a_reader_union_with_a_matching_branch():
    assert can_read(record(field("x", ["null", "long"])), record(field("x", "int"))) == []
    assert "matches no branch" in can_read(record(field("x", ["null", "string"])), record(field("x", "int")))[0]


def test_a_writer_union_reads_into_a_plain_reader_only_if_every_branch_does():
    assert can_read(record(field("x", "long")), record(field("x", ["int", "long"]))) == []
    assert can_read(record(field("x", "string")), record(field("x", ["null", "string"]))) == [
        "UsageEvent.x: writer type 'null' cannot be read as 'string'"
    ]


def test_a_record_in_a_union_is_checked_field_by_field():
    cost = {"type": "record", "name": "Cost", "fields": [field("amount", "double")]}
    cost_v2 = {**cost, "fields": [field("amount", "double"), field("currency", "string")]}
    problems = can_read(record(field("cost", ["null", cost_v2])), record(field("cost", ["null", cost])))
    assert problems == ["field 'currency' of UsageEvent.cost has no default and is missing from the writer schema"]


# --- arrays, maps, fixed, logical types ----------------------------------------------------


def test_arrays_and_maps_resolve_their_items_and_values():
    def array(items):
        return record(field("xs", {"type": "array", "items": items}))

    def map_(values):
        return record(field("xs", {"type": "map", "values": values}))

    assert can_read(array("long"), array("int")) == []
    assert can_read(array("int"), array("long")) == ["UsageEvent.xs[]: writer type 'long' cannot be read as 'int'"]
    assert can_read(map_("int"), map_("string")) == ["UsageEvent.xs{}: writer type 'string' cannot be read as 'int'"]
    assert can_read(map_("int"), array("int")) == ["UsageEvent.xs: writer type array cannot be read as map"]


def test_fixed_must_keep_its_name_and_size():
    def fixed(size, name="Hash"):
        return {"type": "fixed", "name": name, "size": size}

    assert can_read(record(field("h", fixed(16))), record(field("h", fixed(16)))) == []
    problems = can_read(record(field("h", fixed(16))), record(field("h", fixed(32))))
    assert problems == ["UsageEvent.h: writer fixed Hash has size 32, the reader's has size 16"]
    assert "names differ" in can_read(record(field("h", fixed(16, "Other"))), record(field("h", fixed(16))))[0]


def test_a_decimal_precision_or_scale_change_is_incompatible():
    old = record(field("price", decimal(18, 6)))
    assert check("FULL", record(field("price", decimal(18, 6))), [old]) == []
    problems = check("BACKWARD", record(field("price", decimal(20, 6))), [old])
    assert problems == [
        "the new schema cannot read data written with the latest schema: UsageEvent.price:"
        " writer decimal(18,6) cannot be read as decimal(20,6) (decimal precision and scale must match)"
    ]
    assert check("BACKWARD", record(field("price", decimal(18, 4))), [old])
    fixed = {"type": "fixed", "name": "D", "size": 8}
    assert "decimal(10,2) cannot be read as decimal(9,2)" in can_read(
        record(field("p", {**fixed, **decimal(9, 2), "type": "fixed"})),
        record(field("p", {**fixed, **decimal(10, 2), "type": "fixed"})),
    )[0]


def test_other_logical_types_follow_their_underlying_type():
    millis = {"type": "long", "logicalType": "timestamp-millis"}
    micros = {"type": "long", "logicalType": "timestamp-micros"}
    date = {"type": "int", "logicalType": "date"}
    assert can_read(record(field("t", micros)), record(field("t", millis))) == []
    assert can_read(record(field("t", millis)), record(field("t", date))) == []  # int -> long
    assert can_read(record(field("t", date)), record(field("t", millis)))


# --- named type references -----------------------------------------------------------------


def test_named_type_references_are_resolved_on_both_sides():
    cost = {"type": "record", "name": "Cost", "fields": [field("amount", "double")]}
    writer = record(field("cost", cost), field("refund", ["null", "Cost"], default=None))
    reader_cost = {"type": "record", "name": "Cost", "fields": [field("amount", "double"), field("tax", "double")]}
    reader = record(field("cost", reader_cost), field("refund", ["null", "om.usage.Cost"], default=None))
    assert can_read(reader, writer) == [
        "field 'tax' of UsageEvent.cost has no default and is missing from the writer schema",
        "field 'tax' of UsageEvent.refund has no default and is missing from the writer schema",
    ]


def test_recursive_types_terminate():
    node = {"type": "record", "name": "Node", "fields": [field("next", ["null", "Node"], default=None)]}
    assert can_read(node, node) == []


# --- levels --------------------------------------------------------------------------------


def test_non_transitive_levels_check_only_the_latest_version():
    v1 = record(field("id", "string"), field("region", "string"))
    v2 = record(field("id", "string"), field("region", "string", default="eu"))
    v3 = record(field("id", "string"))  # drops region: v1 (no default) can no longer read v3 data
    assert check("FORWARD", v3, [v1, v2]) == []
    assert len(check("FORWARD_TRANSITIVE", v3, [v1, v2])) == 1
    assert check("FULL", v3, [v1, v2]) == []
    assert len(check("FULL_TRANSITIVE", v3, [v1, v2])) == 1


def test_backward_transitive_checks_every_version():
    v1 = record(field("id", "string"))
    v2 = record(field("id", "string"), field("region", "string", default="eu"))
    v3 = record(field("id", "string"), field("region", "string"))  # reads v2 data, not v1 data
    assert check("BACKWARD", v3, [v1, v2]) == []
    assert check("BACKWARD_TRANSITIVE", v3, [v1, v2]) == [
        "the new schema cannot read data written with an existing schema:"
        " field 'region' of UsageEvent has no default and is missing from the writer schema"
    ]


def test_none_and_first_versions_are_always_compatible():
    assert check("NONE", record(field("x", "int")), [record(field("x", "string"))]) == []
    assert all(check(level, V1, []) == [] for level in LEVELS)


def test_unknown_levels_and_invalid_schemas_are_refused():
    with pytest.raises(ValueError, match="unknown compatibility level"):
        check("SIDEWAYS", V1, [V1])
    with pytest.raises(InvalidSchema, match="not valid JSON"):
        can_read("{not json", V1)
    with pytest.raises(InvalidSchema, match="Nope"):
        can_read(record(field("x", "Nope")), V1)
