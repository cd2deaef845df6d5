"""The calls confluent-kafka's stock 2.x SchemaRegistryClient makes, against our registry: register,
by id, latest, by guid, latest with metadata, and modes (which our store enforces). Readers are
fresh clients, so no answer comes from the writer's cache. Also the codecs' HttpRegistry
(schemas/registry_client.py) over the same API."""

from __future__ import annotations

import json

import httpx
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from schemas.registry import RegistryError
from schemas.registry_client import HttpRegistry
from tests.conftest import unique

V1 = {"type": "record", "name": "StockProbe", "namespace": "om.test", "fields": [{"name": "id", "type": "string"}]}
V2 = {**V1, "fields": [*V1["fields"], {"name": "n", "type": "long", "default": 0}]}


def text(schema: dict) -> str:
    return json.dumps(schema, separators=(",", ":"))


@pytest.fixture()
def operator(settings):
    return SchemaRegistryClient({"url": settings.api_url, "basic.auth.user.info": settings.schema_registry_basic_auth})


def reader(settings) -> SchemaRegistryClient:
    return SchemaRegistryClient({"url": settings.api_url, "max.retries": 0})


def fails(call, status: int, code: int) -> SchemaRegistryError:
    with pytest.raises(SchemaRegistryError) as caught:
        call()
    assert (caught.value.http_status_code, caught.value.error_code) == (status, code), caught.value
    return caught.value


def test_register_then_read_by_id_latest_guid_and_metadata(settings, operator):
    subject = unique("stock") + "-value"
    schema_id = operator.register_schema(subject, Schema(text(V1), "AVRO"))

    assert reader(settings).get_schema(schema_id).schema_str == text(V1)
    latest = reader(settings).get_latest_version(subject)
    assert (latest.schema_id, latest.version, latest.subject) == (schema_id, 1, subject)
    assert latest.guid  # the schema's second identity, derived from its content

    by_guid = reader(settings).get_schema_by_guid(latest.guid)
    assert by_guid.schema_str == text(V1)
    fails(lambda: reader(settings).get_schema_by_guid("00000000-0000-0000-0000-000000000000"), 404, 40403)
    fails(lambda: reader(settings).get_schema_by_guid("not-a-guid"), 404, 40403)

    operator.register_schema(subject, Schema(text(V2), "AVRO"))
    with_metadata = reader(settings).get_latest_with_metadata(subject, {})
    assert (with_metadata.version, with_metadata.schema.schema_str) == (2, text(V2))
    fails(lambda: reader(settings).get_latest_with_metadata(subject, {"owner": "billing"}), 404, 40403)
    fails(lambda: reader(settings).get_latest_with_metadata(unique("nope"), {}), 404, 40401)


def test_modes_are_kept_per_subject_and_read_only_refuses_new_schemas(settings, operator):
    subject = unique("stock") + "-value"
    schema_id = operator.register_schema(subject, Schema(text(V1), "AVRO"))
    assert operator.get_global_mode() == "READWRITE"
    fails(lambda: operator.get_mode(subject), 404, 40409)  # no subject-level mode yet

    assert operator.update_mode(subject, "READONLY") == "READONLY"
    assert reader(settings).get_mode(subject) == "READONLY"
    fails(lambda: operator.register_schema(subject, Schema(text(V2), "AVRO")), 422, 42205)
    fails(lambda: operator.delete_subject(subject), 422, 42205)
    fresh = SchemaRegistryClient({"url": settings.api_url, "basic.auth.user.info": settings.schema_registry_basic_auth})
    assert fresh.register_schema(subject, Schema(text(V1), "AVRO")) == schema_id  # held already: nothing written
    other = unique("stock") + "-value"
    assert operator.register_schema(other, Schema(text(V2), "AVRO"))  # only that subject is read-only

    fails(lambda: operator.update_mode(subject, "IMPORT"), 422, 42205)  # not offered: we assign ids
    fails(lambda: operator.update_mode(subject, "SIDEWAYS"), 422, 42204)
    assert operator.delete_mode(subject) == "READONLY"
    assert operator.register_schema(subject, Schema(text(V2), "AVRO")) != schema_id
    fails(lambda: operator.delete_mode(subject), 404, 40401)

    body = httpx.get(f"{settings.api_url}/mode/{subject}", params={"defaultToGlobal": "true"}, timeout=10)
    assert body.json() == {"mode": "READWRITE"}


def test_global_read_only_mode_then_back(settings, operator):
    """Global READONLY refuses a new subject; restored in `finally`, so a failure cannot leave the
    stack's registry read-only for the tests after this one."""
    try:
        assert operator.update_global_mode("READONLY") == "READONLY"
        assert reader(settings).get_global_mode() == "READONLY"
        fails(lambda: operator.register_schema(unique("stock") + "-value", Schema(text(V1), "AVRO")), 422, 42205)
    finally:
        assert operator.update_global_mode("READWRITE") == "READWRITE"
    assert operator.register_schema(unique("stock") + "-value", Schema(text(V1), "AVRO"))


def test_mode_writes_need_the_operator_credential(settings):
    anonymous = reader(settings)
    subject = unique("stock") + "-value"
    fails(lambda: anonymous.update_global_mode("READONLY"), 401, 40101)
    fails(lambda: anonymous.update_mode(subject, "READONLY"), 401, 40101)
    fails(lambda: anonymous.delete_mode(subject), 401, 40101)
    assert anonymous.get_global_mode() == "READWRITE"


def test_the_codecs_http_registry_gets_or_registers_and_looks_up(settings):
    registry = HttpRegistry(settings.api_url, settings.schema_registry_basic_auth)
    subject = unique("stock") + "-value"
    with pytest.raises(RegistryError) as missing:
        registry.lookup(subject, text(V1))
    assert (missing.value.http_status, missing.value.error_code) == (404, 40401)
    schema_id = registry.register(subject, text(V1))
    assert registry.register(subject, text(V1)) == schema_id  # get-or-register
    assert registry.lookup(subject, text(V1)) == (schema_id, 1)
    assert registry.schema_by_id(schema_id) == text(V1)

    anonymous = HttpRegistry(settings.api_url)
    with pytest.raises(RegistryError) as refused:
        anonymous.register(unique("stock") + "-value", text(V1))
    assert (refused.value.http_status, refused.value.error_code) == (401, 40101)
