"""The schema registry served by the API: Confluent's REST API over Postgres, used by stock clients."""

from __future__ import annotations

import io
import json
import struct
import threading
from decimal import Decimal

import fastavro
import httpx
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from tests.conftest import eventually, unique

MEDIA_TYPE = "application/vnd.schemaregistry.v1+json"

V1 = {
    "type": "record",
    "name": "UsageEvent",
    "namespace": "om.test",
    "fields": [
        {"name": "event_id", "type": "string"},
        {"name": "quantity", "type": "long"},
        {"name": "cost", "type": {"type": "bytes", "logicalType": "decimal", "precision": 18, "scale": 6}},
    ],
}
# BACKWARD-compatible: a new field with a default
V2 = {**V1, "fields": [*V1["fields"], {"name": "region", "type": "string", "default": "eu"}]}
# not BACKWARD-compatible with V2: a new field without a default
V3 = {**V1, "fields": [*V2["fields"], {"name": "model", "type": "string"}]}


def operator(settings) -> httpx.BasicAuth:
    """The registry's write credential (test_schema_registry_auth.py tests its refusals)."""
    return httpx.BasicAuth("operator", settings.schema_registry_operator_key)


@pytest.fixture()
def api(settings):
    with httpx.Client(base_url=settings.api_url, timeout=10, auth=operator(settings)) as client:
        yield client


def register(api, subject: str, schema: dict, content_type: str = MEDIA_TYPE, **body) -> httpx.Response:
    payload = json.dumps({"schema": json.dumps(schema), **body})
    return api.post(f"/subjects/{subject}/versions", content=payload, headers={"Content-Type": content_type})


def error(response: httpx.Response, status: int, code: int) -> str:
    """Assert a Confluent error answer; its message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == MEDIA_TYPE
    body = response.json()
    assert body["error_code"] == code, body
    return body["message"]


def test_registering_is_idempotent_and_ids_are_global(api):
    subject, other = unique("reg") + "-value", unique("reg") + "-value"
    first = register(api, subject, V1)
    assert first.status_code == 200 and first.headers["content-type"] == MEDIA_TYPE
    schema_id = first.json()["id"]
    assert register(api, subject, V1).json() == {"id": schema_id}
    spaced = api.post(f"/subjects/{subject}/versions", json={"schema": json.dumps(V1, indent=2)})
    assert spaced.json() == {"id": schema_id}  # whitespace does not make another schema
    assert api.get(f"/subjects/{subject}/versions").json() == [1]

    assert register(api, other, V1).json() == {"id": schema_id}  # same schema, other subject: same id
    assert json.loads(api.get(f"/schemas/ids/{schema_id}").json()["schema"]) == V1
    holders = api.get(f"/schemas/ids/{schema_id}/versions").json()  # other tests register V1 too
    assert {"subject": subject, "version": 1} in holders and {"subject": other, "version": 1} in holders
    assert {subject, other} <= set(api.get("/subjects").json())


def test_versions_by_number_latest_and_lookup(api):
    subject = unique("ver") + "-value"
    id1, id2 = register(api, subject, V1).json()["id"], register(api, subject, V2).json()["id"]
    assert id1 != id2
    assert api.get(f"/subjects/{subject}/versions").json() == [1, 2]
    v1 = api.get(f"/subjects/{subject}/versions/1").json()
    assert (v1["subject"], v1["id"], v1["version"], json.loads(v1["schema"])) == (subject, id1, 1, V1)
    latest = api.get(f"/subjects/{subject}/versions/latest").json()
    assert (latest["id"], latest["version"]) == (id2, 2)
    assert api.get(f"/subjects/{subject}/versions/-1").json()["version"] == 2
    assert api.get(f"/subjects/{subject}/versions/latest/schema").json() == V2

    query = {"normalize": "False", "deleted": "False"}  # as confluent-kafka's client spells them
    found = api.post(f"/subjects/{subject}", params=query, json={"schema": json.dumps(V1)})
    assert found.json() == {"subject": subject, "id": id1, "guid": v1["guid"], "version": 1, "schema": v1["schema"]}


def test_a_backward_compatible_change_is_a_new_version_and_an_incompatible_one_is_refused(api):
    subject = unique("compat") + "-value"
    register(api, subject, V1)
    assert register(api, subject, V2).status_code == 200
    message = error(register(api, subject, V3), 409, 409)
    assert "field 'model' of UsageEvent has no default and is missing from the writer schema" in message
    assert api.get(f"/subjects/{subject}/versions").json() == [1, 2]


def test_the_compatibility_endpoint_answers_without_registering(api):
    subject = unique("check") + "-value"
    register(api, subject, V1)
    url = f"/compatibility/subjects/{subject}/versions/latest"
    assert api.post(url, json={"schema": json.dumps(V2)}).json() == {"is_compatible": True}
    assert api.post(url, json={"schema": json.dumps(V3)}).json() == {"is_compatible": False}
    verbose = api.post(url, params={"verbose": "true"}, json={"schema": json.dumps(V3)}).json()
    assert verbose["is_compatible"] is False and any("field 'model'" in m for m in verbose["messages"])
    assert api.post(f"/compatibility/subjects/{subject}/versions", json={"schema": json.dumps(V2)}).json() == {
        "is_compatible": True
    }
    assert api.get(f"/subjects/{subject}/versions").json() == [1]


def test_compatibility_level_per_subject(api):
    subject = unique("cfg") + "-value"
    global_level = api.get("/config").json()["compatibilityLevel"]  # BACKWARD unless someone changed it
    error(api.get(f"/config/{subject}"), 404, 40408)
    defaulted = api.get(f"/config/{subject}", params={"defaultToGlobal": "true"})
    assert defaulted.json() == {"compatibilityLevel": global_level}

    assert api.put(f"/config/{subject}", json={"compatibility": "none"}).json() == {"compatibility": "NONE"}
    assert api.get(f"/config/{subject}").json() == {"compatibilityLevel": "NONE"}
    register(api, subject, V1)
    assert register(api, subject, V3).status_code == 200  # NONE: anything goes
    error(api.put(f"/config/{subject}", json={"compatibility": "SIDEWAYS"}), 422, 42203)

    assert api.delete(f"/config/{subject}").json() == {"compatibilityLevel": "NONE"}
    error(api.get(f"/config/{subject}"), 404, 40408)


def test_errors_carry_confluent_codes(api):
    subject = unique("err") + "-value"
    assert "not found" in error(api.get(f"/subjects/{subject}/versions"), 404, 40401)
    error(api.get(f"/subjects/{subject}/versions/latest"), 404, 40401)
    error(api.post(f"/subjects/{subject}", json={"schema": json.dumps(V1)}), 404, 40401)
    register(api, subject, V1)
    error(api.get(f"/subjects/{subject}/versions/7"), 404, 40402)
    error(api.post(f"/subjects/{subject}", json={"schema": json.dumps(V2)}), 404, 40403)
    error(api.get("/schemas/ids/2000000000"), 404, 40403)
    error(api.get(f"/subjects/{subject}/versions/first"), 422, 42202)
    error(api.post(f"/subjects/{subject}/versions", json={"schema": "{not json"}), 422, 42201)
    unknown_type = {"type": "record", "name": "X", "fields": [{"name": "a", "type": "Nope"}]}
    assert "Nope" in error(register(api, subject, unknown_type), 422, 42201)
    message = error(register(api, subject, V1, schemaType="PROTOBUF"), 422, 42201)
    assert "PROTOBUF is not supported" in message
    references = [{"name": "x", "subject": "y", "version": 1}]
    assert "references" in error(register(api, subject, V1, references=references), 422, 42201)


@pytest.mark.parametrize("content_type", [MEDIA_TYPE, "application/vnd.schemaregistry+json", "application/json"])
def test_request_bodies_in_every_registry_content_type(api, content_type):
    assert register(api, unique("ct") + "-value", V1, content_type=content_type).status_code == 200


def test_deleting_a_subject_is_soft_and_keeps_ids_resolvable(api):
    subject = unique("del") + "-value"
    schema_id = register(api, subject, V1).json()["id"]
    assert api.delete(f"/subjects/{subject}").json() == [1]
    assert subject not in api.get("/subjects").json()
    assert subject in api.get("/subjects", params={"deleted": "true"}).json()
    error(api.get(f"/subjects/{subject}/versions"), 404, 40401)
    assert api.get(f"/schemas/ids/{schema_id}").status_code == 200
    assert register(api, subject, V1).json() == {"id": schema_id}
    assert api.get(f"/subjects/{subject}/versions").json() == [2]  # versions keep counting


def test_concurrent_registrations_of_a_new_schema_end_with_one_id_and_one_version(api, settings):
    subjects = [unique("race") + "-value", unique("race") + "-value"]
    schema = {**V2, "name": unique("Race")}  # new to the registry: every thread races to create it
    barrier = threading.Barrier(8)
    ids: list[int] = []

    def race(subject: str) -> None:
        with httpx.Client(base_url=settings.api_url, timeout=10, auth=operator(settings)) as client:
            barrier.wait()
            ids.append(register(client, subject, schema).json()["id"])

    threads = [threading.Thread(target=race, args=(subjects[i % 2],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ids) == 8 and len(set(ids)) == 1
    for subject in subjects:
        assert api.get(f"/subjects/{subject}/versions").json() == [1]


def test_stock_confluent_clients_produce_and_consume_through_our_registry(api, settings):
    topic = unique("test_registry")
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result()
    client = SchemaRegistryClient({"url": settings.api_url, "basic.auth.user.info": settings.schema_registry_basic_auth})
    old = {"event_id": "e-1", "quantity": 3, "cost": Decimal("0.001250")}
    new = {"event_id": "e-2", "quantity": 5, "cost": Decimal("1.500000"), "region": "us"}

    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    context = SerializationContext(topic, MessageField.VALUE)
    producer.produce(topic, value=AvroSerializer(client, json.dumps(V1))(old, context))
    producer.produce(topic, value=AvroSerializer(client, json.dumps(V2))(new, context))  # registers version 2
    assert producer.flush(30) == 0
    assert api.get(f"/subjects/{topic}-value/versions").json() == [1, 2]

    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": unique("g"),
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    values: list[bytes] = []

    def both_received():
        for message in consumer.consume(10, timeout=0.5):
            assert message.error() is None, message.error()
            values.append(message.value())
        return len(values) >= 2

    eventually(both_received, timeout_s=30, interval_s=0, what="2 records")
    consumer.close()

    assert [AvroDeserializer(client)(v, context) for v in values] == [old, new]
    # v2 as the reader schema reads v1 records: the new field takes its default
    assert AvroDeserializer(client, json.dumps(V2))(values[0], context) == {**old, "region": "eu"}

    # plain fastavro: Confluent wire format = magic byte 0, 4-byte big-endian schema id, Avro body
    writers = []
    for value in values:
        magic, schema_id = struct.unpack(">bI", value[:5])
        assert magic == 0
        writers.append(fastavro.parse_schema(json.loads(api.get(f"/schemas/ids/{schema_id}").json()["schema"])))
    assert [fastavro.schemaless_reader(io.BytesIO(v[5:]), w) for v, w in zip(values, writers)] == [old, new]
    v2_reader = fastavro.parse_schema(V2)
    assert fastavro.schemaless_reader(io.BytesIO(values[0][5:]), writers[0], v2_reader) == {**old, "region": "eu"}
