"""Every writer of keyed records puts a key on the partition Java's murmur2 picks, as the API and
Kafka's own clients do: the wallet agent keeps a wallet's state in the partition its commands
and debits arrive on, and the usage agent dedupes a `customer:user` key within its partition.
A command a producer placed with librdkafka's default partitioner (CRC32) was applied to another
copy of its wallet (rebilling adjustments and plan grants, seen with two workers)."""

from __future__ import annotations

from decimal import Decimal

from aiokafka.partitioner import murmur2
from confluent_kafka.admin import AdminClient, NewTopic

from openmonetize.plans.scheduler import KafkaSender
from openmonetize.rebilling.booking import send
from openmonetize.rebilling.rerate import Adjustment
from producers.usage_producer import UsageProducer
from tests.conftest import unique
from tests.integration.support import read_topic, token_event

PARTITIONS = 6


def murmur2_partition(key: bytes) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % PARTITIONS


def topics(settings, *names: str) -> None:
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    for future in admin.create_topics([NewTopic(name, PARTITIONS, 1) for name in names]).values():
        future.result(30)


def assert_placed_by_murmur2(settings, topic: str, expected: int) -> None:
    records = read_topic(settings.kafka_bootstrap, topic)
    assert len(records) == expected
    assert {(r.key(), r.partition()) for r in records} == {(r.key(), murmur2_partition(r.key())) for r in records}
    assert len({r.partition() for r in records}) > 1  # spread: a placement that could have gone wrong


def test_rebilling_adjustments_and_plan_grants_land_on_their_wallet_s_murmur2_partition(settings):
    adjustments_topic, grants_topic, directory_topic = unique("adjustments"), unique("grants"), unique("directory")
    topics(settings, adjustments_topic, grants_topic, directory_topic)
    wallets = [f"w:cus_p:user:u{i}" for i in range(24)]
    send(settings.kafka_bootstrap, adjustments_topic, lambda command: command["command_id"].encode(),
         [Adjustment("run1", "cus_p", f"evt{i}", wallet, f"u{i}", Decimal("1.5"), 0) for i, wallet in enumerate(wallets)],
         timeout_s=30)
    assert_placed_by_murmur2(settings, adjustments_topic, len(wallets))

    sender = KafkaSender(settings.kafka_bootstrap, grants_topic, lambda command: b"grant", directory_topic,
                         lambda entry: b"entry")
    sender([{"wallet_id": wallet, "customer_id": "cus_p", "command_id": f"g{i}"} for i, wallet in enumerate(wallets)])
    sender.close()
    assert_placed_by_murmur2(settings, grants_topic, len(wallets))
    assert_placed_by_murmur2(settings, directory_topic, len(wallets))


def test_the_usage_producer_puts_a_customer_user_key_where_the_api_does(settings, tenant):
    topic = unique("usage_events")
    topics(settings, topic)
    producer = UsageProducer(tenant.customer_id, topic=topic)
    for i in range(24):
        producer.produce(token_event(user_id=f"user-{i}"))
    producer.flush(30)
    assert_placed_by_murmur2(settings, topic, 24)
