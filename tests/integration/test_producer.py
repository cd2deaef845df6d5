"""UsageProducer against the running stack: Kafka, and the schema registry served by the API."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from producers import loadgen
from producers.usage_producer import KafkaUnavailable, RegistryUnavailable, UsageProducer
from schemas.usage_event import EventError
from tests.conftest import unique
from tests.integration.support import UsageTail


def make_event(i: int, **fields) -> dict:
    return {
        "event_id": f"evt_{uuid.uuid4().hex}",
        "user_id": f"user-{i % 7}",
        "event_type": "TOKEN_USAGE",
        "feature_id": "chat",
        "provider": "openai",
        "model": "gpt-4o",
        "input_tokens": 1000 + i,
        "output_tokens": 200 + i,
        "timestamp": (datetime.now(timezone.utc) - timedelta(seconds=i)).isoformat(),
        **fields,
    }


@pytest.fixture
def customer_id() -> str:
    return unique("cus_prod")


def test_events_arrive_once_with_exact_fields_and_key(settings, customer_id):
    tail = UsageTail(settings, customer_id)
    events = [make_event(i) for i in range(300)]
    events[1].update(team_id="team-ü", cached_input_tokens=400, metadata={"region": "eu", "note": "日本語 🙂"})
    events[2] = make_event(2, event_type="CUSTOM", provider=None, model=None, input_tokens=None, output_tokens=None,
                           unit_type="pages", quantity="12.345678901234")
    events[3] = make_event(3, event_type="IMAGE_GENERATION", model="dall-e-3", input_tokens=None, output_tokens=None,
                           image_count=2, image_size="1024x1024", quality="hd")
    events[4] = make_event(4, input_tokens=49_999_999, reservation_id="res_1", customer_id=customer_id)
    reports = []
    started = datetime.now(timezone.utc)
    with UsageProducer(customer_id, settings=settings) as producer:
        for event in events[:100]:
            producer.produce(event, on_delivery=lambda err, msg: reports.append(err))
        assert producer.produce_many(events[100:]) == 200
    assert producer.delivered == 300 and producer.failed == 0 and producer.in_flight == 0
    assert len(reports) == 100 and all(err is None for err in reports)

    try:
        records = tail.wait_for(300)  # reads on to the high watermarks: an extra record would show
        received = {record["event_id"]: (key, record) for key, record in records}
        assert len(records) == 300 and len(received) == 300  # each once
    finally:
        tail.close()
    for event in events:
        key, record = received[event["event_id"]]
        assert key == f"{customer_id}:{event['user_id']}"
        assert record["customer_id"] == customer_id and record["source"] == "kafka"
        assert started - timedelta(seconds=1) <= record["received_at"] <= datetime.now(timezone.utc)
        assert record["timestamp"] == datetime.fromisoformat(event["timestamp"])
        for name in ("user_id", "team_id", "event_type", "feature_id", "provider", "model", "input_tokens",
                     "output_tokens", "cached_input_tokens", "image_count", "image_size", "quality", "unit_type",
                     "reservation_id", "metadata"):
            assert record[name] == event.get(name), name
        assert record["quantity"] == (Decimal(event["quantity"]) if event.get("quantity") else None)


def test_an_invalid_event_raises_naming_the_field_and_produces_nothing(settings, customer_id):
    tail = UsageTail(settings, customer_id)
    try:
        with UsageProducer(customer_id, settings=settings) as producer:
            with pytest.raises(EventError) as error:
                producer.produce(make_event(1, input_tokens=-5))
            assert error.value.field == "input_tokens"
            with pytest.raises(EventError) as error:
                producer.produce(make_event(2, output_tokens=None))
            assert error.value.field == "output_tokens"
            with pytest.raises(EventError) as error:
                producer.produce(make_event(3, customer_id="cus_someone_else"))
            assert error.value.field == "customer_id"
            with pytest.raises(EventError) as error:
                producer.produce_many([make_event(4), make_event(5, input_token=3)])
            assert error.value.field == "input_token" and error.value.index == 1
            sentinel = make_event(6)
            producer.produce(sentinel)
        assert producer.produced == producer.delivered == 2
        records = tail.wait_for(2)
        assert len(records) == 2
        assert records[-1][1]["event_id"] == sentinel["event_id"] or records[0][1]["event_id"] == sentinel["event_id"]
    finally:
        tail.close()


def test_registry_unreachable_is_a_clear_error_naming_the_url(settings, customer_id):
    with pytest.raises(RegistryUnavailable, match=r"http://127\.0\.0\.1:9 is unreachable"):
        UsageProducer(customer_id, schema_registry_url="http://127.0.0.1:9", settings=settings, registry_timeout_s=2)


def test_kafka_unreachable_is_a_clear_error_after_a_bounded_wait_in_flush(settings, customer_id):
    producer = UsageProducer(customer_id, bootstrap_servers="127.0.0.1:9", settings=settings)
    producer.produce(make_event(1))
    started = time.monotonic()
    with pytest.raises(KafkaUnavailable, match=r"Kafka at 127\.0\.0\.1:9 did not acknowledge 1 event"):
        producer.flush(3)
    assert time.monotonic() - started < 10
    assert producer.abort() == 1
    assert producer.failed == 1 and producer.delivered == 0


def test_loadgen_via_kafka_delivers_with_identical_duplicates(settings):
    tenants = [unique("cus_lg") for _ in range(2)]
    tail = UsageTail(settings, tenants)
    generator = loadgen.EventGenerator(1234, tenants, 20, duplicate_share=0.1, late_share=0.05)
    sink = loadgen.KafkaSink(tenants, settings=settings)
    summary = loadgen.run(generator, sink, rate=150, duration_s=2)
    assert summary.sent == 300 and summary.counts["delivered"] == 300 and summary.counts["failed"] == 0
    assert summary.duplicates > 0
    try:
        records = tail.wait_for(300)
    finally:
        tail.close()
    by_id: dict[str, list[dict]] = {}
    for key, record in records:
        assert key.split(":")[0] == record["customer_id"]
        by_id.setdefault(record["event_id"], []).append(record)
    repeated = [copies for copies in by_id.values() if len(copies) > 1]
    assert sum(len(c) - 1 for c in repeated) == summary.duplicates
    for copies in repeated:  # the same body; only our edge's received_at may differ
        bodies = [{k: v for k, v in r.items() if k != "received_at"} for r in copies]
        assert all(body == bodies[0] for body in bodies)
