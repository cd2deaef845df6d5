"""What the ingestion tests share: a fresh tenant, valid events, and reading back what landed on
usage.events (from the end offsets taken before the request, decoded with the registered schema)."""

from __future__ import annotations

import socket
import threading
from datetime import datetime, timezone

import httpx
import psycopg
from confluent_kafka import Consumer, TopicPartition

from openmonetize.catalog_admin import publish_tenant
from openmonetize.settings import Settings
from openmonetize.stores.tenants import NewCustomer, create_customer
from openmonetize.topic_reader import read_to_end
from schemas.codec import AvroCodec, schema_text
from schemas.topics import topics
from tests.conftest import eventually, unique


def new_tenant(settings: Settings) -> NewCustomer:
    """A tenant created as `openmonetize admin customers create` creates one: stored, then published."""
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        created = create_customer(conn, unique("t"))
    publish_tenant(settings, created.customer_id)
    return created


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


def token_event(**fields) -> dict:
    """A valid TOKEN_USAGE event with a unique id; `fields` override or add."""
    event = {
        "event_id": unique("evt"),
        "user_id": "user-1",
        "event_type": "TOKEN_USAGE",
        "feature_id": "chat",
        "provider": "openai",
        "model": "gpt-4o",
        "input_tokens": 1200,
        "output_tokens": 300,
        "timestamp": now_iso(),
    }
    event.update(fields)
    return event


class RegistryOverHttp:
    """The codec's schema resolver, through the API's schema registry routes."""

    def __init__(self, api_url: str):
        self.api_url = api_url

    def schema_by_id(self, schema_id: int) -> str:
        response = httpx.get(f"{self.api_url}/schemas/ids/{schema_id}", timeout=5)
        response.raise_for_status()
        return response.json()["schema"]


class UsageTail:
    """Records appended to usage.events after construction, for the given customers."""

    def __init__(self, settings: Settings, customer_ids: str | list[str]):
        self.customer_ids = {customer_ids} if isinstance(customer_ids, str) else set(customer_ids)
        spec = topics(settings).usage_events
        latest = httpx.get(f"{settings.api_url}/subjects/{spec.subject}/versions/latest", timeout=5).json()["id"]
        self.codec = AvroCodec(schema_text(spec.schema_file), latest, RegistryOverHttp(settings.api_url))
        self.topic = spec.name
        self.consumer = Consumer(
            {
                "bootstrap.servers": settings.kafka_bootstrap,
                "group.id": unique("ingest-test"),
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 20,  # idle partitions report their position sooner: catching up takes 0.5 s, not 3
            }
        )
        metadata = self.consumer.list_topics(self.topic, timeout=10).topics[self.topic]
        starts = []
        for partition in metadata.partitions:
            _, high = self.consumer.get_watermark_offsets(TopicPartition(self.topic, partition), timeout=10)
            starts.append(TopicPartition(self.topic, partition, high))
        self.consumer.assign(starts)
        self.starts = {tp.partition: tp.offset for tp in starts}
        self.records: list[tuple[str, dict]] = []

    def _drain(self) -> None:
        for message in self.consumer.consume(1000, timeout=0.2):
            if message.error():
                raise RuntimeError(message.error())
            record = self.codec.decode(message.value())
            if record["customer_id"] in self.customer_ids:
                self.records.append((message.key().decode(), record))

    def wait_for(self, count: int, timeout_s: float = 30.0) -> list[tuple[str, dict]]:
        """Exactly the (key, record) pairs of this customer once `count` have arrived."""

        def arrived():
            self._drain()
            return len(self.records) >= count

        eventually(arrived, timeout_s, interval_s=0, what=f"{count} records of {sorted(self.customer_ids)}")
        # Everything the API acknowledged is below today's high watermarks: read up to them, so
        # that an unexpected extra record is seen too.
        ends = {tp.partition: self.consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in self.consumer.assignment()}

        def caught_up():
            self._drain()
            positions = self.consumer.position(self.consumer.assignment())
            return all(
                tp.offset >= ends[tp.partition] or ends[tp.partition] == self.starts[tp.partition] for tp in positions
            )

        eventually(caught_up, timeout_s, interval_s=0, what="the consumer to reach the high watermarks")
        return self.records

    def produced_nothing_before(self, api_url: str, api_key: str, user_id: str) -> bool:
        """Send a marker event keyed like the refused ones (same partition) and check that it is
        the only record of this customer: anything produced earlier would precede it."""
        marker = token_event(user_id=user_id)
        response = httpx.post(
            f"{api_url}/v1/events/ingest", json={"events": [marker]}, headers={"X-OM-Api-Key": api_key}, timeout=30
        )
        assert response.status_code == 202, response.text
        records = self.wait_for(1)
        return [r["event_id"] for _, r in records] == [marker["event_id"]]

    def close(self) -> None:
        self.consumer.close()


def read_topic(bootstrap: str, topic: str) -> list:
    """Every record of every partition of `topic`, up to the end offsets when called."""
    return list(read_to_end(bootstrap, topic))


def clickhouse_query(settings: Settings, sql: str, **parameters) -> list[tuple]:
    """Rows of one query on the stack's ClickHouse, in its `openmonetize` database."""
    from openmonetize import clickhouse_client

    client = clickhouse_client.get_client(settings, "writer", database=settings.clickhouse_database)
    try:
        return client.query(sql, parameters=parameters).result_rows
    finally:
        client.close()


class Proxy:
    """A TCP relay to Postgres that the test can cut (connections dropped, new ones refused)."""

    def __init__(self, target_port: int):
        self.target = ("127.0.0.1", target_port)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.listener: socket.socket | None = None
        self.lock = threading.Lock()

    def up(self) -> None:
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", self.port))
        self.listener.listen(16)
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def down(self) -> None:
        listener, self.listener = self.listener, None
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() blocked on it (Linux)
            except OSError:
                pass
            listener.close()
        with self.lock:
            for conn in self.conns:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                conn.close()
            self.conns.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            with self.lock:
                self.conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
