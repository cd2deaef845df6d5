"""Read a whole topic once: every partition from its start up to the end offsets seen at the call.

No consumer group is joined and nothing is committed: for tools and checks that look at a topic
(`openmonetize reconcile`, tests), never for the pipeline's own consumption.
"""

from __future__ import annotations

from collections.abc import Iterator

from confluent_kafka import Consumer, Message, TopicPartition


def read_to_end(bootstrap: str, topic: str, timeout_s: float = 10.0) -> Iterator[Message]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "openmonetize-topic-reader",
                         "enable.auto.commit": False, "fetch.wait.max.ms": 20})
    try:
        partitions = consumer.list_topics(topic, timeout=timeout_s).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)[1] for p in partitions}
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        done = {p for p, end in ends.items() if end == 0}
        while len(done) < len(ends):
            for message in consumer.consume(1000, timeout=0.2):
                if message.error() is None:
                    if message.offset() < ends[message.partition()]:
                        yield message
                    if message.offset() + 1 >= ends[message.partition()]:
                        done.add(message.partition())
            for tp in consumer.position([TopicPartition(topic, p) for p in ends]):
                if tp.offset >= ends[tp.partition]:
                    done.add(tp.partition)
    finally:
        consumer.close()
