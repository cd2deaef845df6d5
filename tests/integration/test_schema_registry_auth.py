"""The schema registry's writes need the operator credential (SCHEMA_REGISTRY_OPERATOR_KEY, which
`stack up` generates under STACK_DIR); its reads stay open to producers. Through the stock
confluent-kafka SchemaRegistryClient, with and without `basic.auth.user.info`, and plain HTTP."""

from __future__ import annotations

import json

import httpx
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from tests.conftest import unique

V1 = {"type": "record", "name": "AuthProbe", "namespace": "om.test", "fields": [{"name": "id", "type": "string"}]}
V2 = {**V1, "fields": [*V1["fields"], {"name": "n", "type": "long"}]}  # not BACKWARD-compatible with V1


def client(settings, user_info: str | None = None) -> SchemaRegistryClient:
    conf = {"url": settings.api_url, "max.retries": 0}
    if user_info is not None:
        conf["basic.auth.user.info"] = user_info
    return SchemaRegistryClient(conf)


def refused(call) -> SchemaRegistryError:
    with pytest.raises(SchemaRegistryError) as caught:
        call()
    assert (caught.value.http_status_code, caught.value.error_code) == (401, 40101), caught.value
    return caught.value


@pytest.fixture()
def operator(settings):
    assert settings.schema_registry_operator_key, "the stack generates SCHEMA_REGISTRY_OPERATOR_KEY (stack up)"
    return client(settings, settings.schema_registry_basic_auth)


@pytest.mark.parametrize("user_info", [None, "operator:wrong-key", "admin:{key}"], ids=["none", "wrong-key", "wrong-user"])
def test_writes_without_the_operator_credential_are_refused(settings, operator, user_info):
    subject = unique("auth") + "-value"
    operator.register_schema(subject, Schema(json.dumps(V1), "AVRO"))
    global_level = operator.get_compatibility()
    other = client(settings, user_info and user_info.format(key=settings.schema_registry_operator_key))

    refused(lambda: other.register_schema(unique("auth") + "-value", Schema(json.dumps(V1), "AVRO")))
    refused(lambda: other.register_schema(subject, Schema(json.dumps(V2), "AVRO")))
    refused(lambda: other.set_compatibility(subject, "NONE"))
    refused(lambda: other.set_compatibility(None, "NONE"))
    refused(lambda: other.delete_subject(subject))
    refused(lambda: other.delete_subject(subject, permanent=True))

    # nothing changed: the subject, its one version and its level are as the operator left them
    assert operator.get_versions(subject) == [1]
    assert operator.get_compatibility() == global_level
    assert not operator.test_compatibility(subject, Schema(json.dumps(V2), "AVRO"))


def test_the_operator_credential_registers_sets_compatibility_and_deletes(settings, operator):
    subject = unique("auth") + "-value"
    schema_id = operator.register_schema(subject, Schema(json.dumps(V1), "AVRO"))
    assert operator.set_compatibility(subject, "NONE") == {"compatibility": "NONE"}
    assert operator.register_schema(subject, Schema(json.dumps(V2), "AVRO")) != schema_id  # NONE lets it in
    assert operator.get_versions(subject) == [1, 2]
    assert operator.delete_subject(subject) == [1, 2]
    assert operator.delete_subject(subject, permanent=True) == [1, 2]
    assert subject not in operator.get_subjects()


def test_reads_need_no_credential(settings, operator):
    subject = unique("auth") + "-value"
    schema_id = operator.register_schema(subject, Schema(json.dumps(V1), "AVRO"))
    reader = client(settings)
    assert subject in reader.get_subjects()
    assert json.loads(reader.get_schema(schema_id).schema_str) == V1
    assert reader.get_latest_version(subject).schema_id == schema_id
    assert reader.get_version(subject, 1).version == 1
    assert reader.lookup_schema(subject, Schema(json.dumps(V1), "AVRO")).schema_id == schema_id  # a POST that reads
    assert reader.get_versions(subject) == [1]
    assert reader.get_compatibility()
    assert reader.test_compatibility(subject, Schema(json.dumps(V1), "AVRO"))  # a POST that writes nothing
    # registering what the subject already holds writes nothing: its id, as stock serializers expect
    assert reader.register_schema(subject, Schema(json.dumps(V1), "AVRO")) == schema_id


def test_refusals_carry_confluent_error_and_basic_challenge(settings):
    subject = unique("auth") + "-value"
    body = {"schema": json.dumps(V1)}
    with httpx.Client(base_url=settings.api_url, timeout=10) as api:
        for auth in (None, httpx.BasicAuth("operator", "wrong"), "Bearer wrong", "Basic %%%not-base64"):
            headers = {"Authorization": auth} if isinstance(auth, str) else {}
            answer = api.post(f"/subjects/{subject}/versions", json=body, headers=headers,
                              auth=auth if isinstance(auth, httpx.BasicAuth) else None)
            assert answer.status_code == 401, answer.text
            assert answer.headers["www-authenticate"] == 'Basic realm="schema-registry"'
            assert answer.headers["content-type"] == "application/vnd.schemaregistry.v1+json"
            assert answer.json()["error_code"] == 40101 and answer.json()["message"]
        for method, path in (("PUT", "/config"), ("PUT", f"/config/{subject}"), ("DELETE", f"/config/{subject}"),
                             ("DELETE", f"/subjects/{subject}")):
            answer = api.request(method, path, json={"compatibility": "NONE"})
            assert (answer.status_code, answer.json()["error_code"]) == (401, 40101), (method, path, answer.text)
        assert api.get(f"/subjects/{subject}/versions").status_code == 404  # nothing was registered

        bearer = {"Authorization": f"Bearer {settings.schema_registry_operator_key}"}
        assert api.post(f"/subjects/{subject}/versions", json=body, headers=bearer).status_code == 200
        assert api.put(f"/config/{subject}", json={"compatibility": "FULL"}, headers=bearer).json() == {
            "compatibility": "FULL"}
        assert api.delete(f"/config/{subject}", headers=bearer).status_code == 200
