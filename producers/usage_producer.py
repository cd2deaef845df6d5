"""`UsageProducer`: a Python client for companies that write usage events to Kafka directly.

    from producers.usage_producer import UsageProducer

    with UsageProducer("cus_0123456789abcdef") as producer:
        producer.produce({
            "event_id": "evt_1", "user_id": "u_42", "event_type": "TOKEN_USAGE", "feature_id": "chat",
            "provider": "openai", "model": "gpt-4o", "input_tokens": 1200, "output_tokens": 300,
            "timestamp": "2026-11-26T12:00:00Z",
        })
    # leaving the block flushes: every event is acknowledged by Kafka (acks=all) or counted failed

Each event is checked against the event contract (schemas/usage_event.py: the same rules as
the HTTP edge) before anything is sent; an invalid one raises `EventError` naming the field.
Valid events become the usage.events Avro record (source "kafka"), framed in the Confluent wire
format with the id under which our schema is registered in the schema registry (looked up,
or registered, once at construction), keyed `customer_id:user_id` so a user's events stay in
order on one partition, and produced with acks=all, idempotence, linger and lz4 compression.

Delivery is asynchronous: `delivered` / `failed` count the reports, an optional per-call
callback receives each one, and `flush(timeout)` waits and returns how many events are still
undelivered. The producer flushes when its `with` block ends and, for producers not used in a
`with` block, when the interpreter exits.
"""

from __future__ import annotations

import atexit
import time
import weakref
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

from confluent_kafka import KafkaError, KafkaException, Producer

from openmonetize.kafka_clients import KEYED
from openmonetize.settings import Settings, get_settings
from schemas.codec import schema_text
from schemas.topic_codecs import codec_with_id
from schemas.registry import RegistryError
from schemas.registry_client import RegistryUnreachable, open_registry
from schemas.topics import topics
from schemas.usage_event import EventError, EventLimits, UsageEventIn, convert_event, decode_event, to_record

__all__ = ["UsageProducer", "ProducerError", "RegistryUnavailable", "KafkaUnavailable", "EventError"]

DeliveryCallback = Callable[[Any, Any], None]  # (KafkaError | None, Message)

SOURCE = "kafka"
DEFAULT_CONFIG: dict[str, Any] = {
    "acks": "all",
    "enable.idempotence": True,
    "linger.ms": 20,
    "compression.type": "lz4",
    "batch.size": 1_000_000,
    "queue.buffering.max.messages": 1_000_000,
    "queue.buffering.max.kbytes": 1_048_576,
    **KEYED,  # the partition of a `customer:user` key is the one the API and Kafka's own clients pick
}
POLL_EVERY = 1024  # serve delivery reports every this many produced events
_BROKER_DOWN = {KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._RESOLVE}


class ProducerError(RuntimeError):
    """The producer cannot do its job (registry or Kafka unreachable); the message says which."""


class RegistryUnavailable(ProducerError):
    """The schema registry did not answer, or refused our schema, at construction."""


class KafkaUnavailable(ProducerError):
    """Kafka did not acknowledge the events within the flush timeout and reports no broker up."""


class UsageProducer:
    """Validates, Avro-encodes and produces usage events of one customer to usage.events."""

    def __init__(
        self,
        customer_id: str,
        bootstrap_servers: str | None = None,
        schema_registry_url: str | None = None,
        config: dict[str, Any] | None = None,
        *,
        topic: str | None = None,
        settings: Settings | None = None,
        registry_timeout_s: float = 10.0,
        close_timeout_s: float = 30.0,
    ):
        settings = settings or get_settings()
        if not customer_id:
            raise ValueError("customer_id: must not be empty")
        self.customer_id = customer_id
        self.bootstrap_servers = bootstrap_servers or settings.kafka_bootstrap
        # Our registry is the API's (the producer never reaches Postgres), unless SCHEMA_REGISTRY_URL names another.
        self.schema_registry_url = (schema_registry_url or settings.schema_registry_url or settings.api_url).rstrip("/")
        spec = topics(settings).usage_events
        self.topic = topic or spec.name
        self.subject = spec.subject
        self.close_timeout_s = close_timeout_s
        self.limits = EventLimits.from_settings(settings)

        self.schema_id = self._schema_id(settings, spec.schema_file, registry_timeout_s)
        self.codec = codec_with_id(spec.schema_file, self.schema_id)
        self._key_prefix = f"{customer_id}:"

        self.produced = 0  # queued to Kafka
        self.delivered = 0
        self.failed = 0
        self.last_error: Any = None  # the last delivery or client error (KafkaError)
        self._broker_error: Any = None  # set by error_cb when no broker answers, cleared on delivery
        conf = {**DEFAULT_CONFIG, **(config or {})}
        conf["bootstrap.servers"] = self.bootstrap_servers
        conf["error_cb"] = self._on_error
        conf["on_delivery"] = self._on_delivery  # the default report callback: cheaper than one per event
        self._producer = Producer(conf)
        self._closed = False
        _live.add(self)

    # --- set-up --------------------------------------------------------------------------

    def _schema_id(self, settings: Settings, schema_file: str, timeout_s: float) -> int:
        """Looked up, else registered (a registry write: schemas/registry_client.py picks the
        credential), through the stock SchemaRegistryClient."""
        url = self.schema_registry_url
        registry = open_registry(settings, url=url, timeout_s=timeout_s, max_retries=1)
        text = schema_text(schema_file)
        try:
            try:
                return registry.lookup(self.subject, text)[0]
            except RegistryError as exc:
                if exc.http_status != 404 or exc.error_code not in (40401, 40403):
                    raise
            return registry.register(self.subject, text)
        except RegistryError as exc:
            raise RegistryUnavailable(
                f"schema registry at {url} refused subject {self.subject!r}: "
                f"HTTP {exc.http_status} (error {exc.error_code}) {exc.message}"
            ) from exc
        except RegistryUnreachable as exc:
            raise RegistryUnavailable(f"{exc}; is the API up (`openmonetize stack status`)?") from exc
        finally:
            registry.close()

    # --- producing -----------------------------------------------------------------------

    def validate(self, event: dict | UsageEventIn | bytes | str, received_at: datetime | None = None) -> dict:
        """The usage.events record of one event (a dict, a decoded event or its JSON), or
        EventError naming the field."""
        if type(event) is dict:
            event = convert_event(event)
        elif isinstance(event, (bytes, bytearray, memoryview, str)):
            event = decode_event(event)  # type: ignore[arg-type]
        elif not isinstance(event, UsageEventIn):
            raise EventError(None, f"an event is a JSON object, got {type(event).__name__}")
        return to_record(
            event,
            customer_id=self.customer_id,
            source=SOURCE,
            received_at=received_at or datetime.now(timezone.utc),
            limits=self.limits,
        )

    def encode(self, record: dict) -> bytes:
        """The Confluent-framed Avro value of a validated record."""
        return self.codec.encode(record)

    def produce(self, event: dict | UsageEventIn | bytes | str, on_delivery: DeliveryCallback | None = None) -> None:
        """Validate, encode and queue one event. Raises EventError (nothing is sent) when invalid."""
        self._check_open()
        record = self.validate(event)
        self._send(self._key_prefix + record["user_id"], self.codec.encode(record), on_delivery)
        if self.produced % POLL_EVERY == 0:
            self._producer.poll(0)

    def produce_many(
        self,
        events: Iterable[dict | UsageEventIn | bytes | str],
        on_delivery: DeliveryCallback | None = None,
        on_invalid: Callable[[int, EventError], None] | None = None,
    ) -> int:
        """Validate, encode and queue many events; the number queued.

        An invalid event calls `on_invalid(index, error)` and is skipped; without `on_invalid`
        it raises its EventError (with `.index`), the events before it being already queued.
        """
        self._check_open()
        producer = self._producer
        send = producer.produce
        poll = producer.poll
        topic, prefix, encode, limits, customer_id = self.topic, self._key_prefix, self.codec.encode, self.limits, self.customer_id
        callback = self._delivery_callback(on_delivery)
        received_at = datetime.now(timezone.utc)
        queued = 0
        try:
            for index, event in enumerate(events):
                try:
                    if type(event) is dict:
                        parsed = convert_event(event)
                    elif isinstance(event, UsageEventIn):
                        parsed = event
                    elif isinstance(event, (bytes, bytearray, memoryview, str)):
                        parsed = decode_event(event)  # type: ignore[arg-type]
                    else:
                        raise EventError(None, f"an event is a JSON object, got {type(event).__name__}")
                    record = to_record(parsed, customer_id=customer_id, source=SOURCE, received_at=received_at, limits=limits)
                except EventError as exc:
                    if on_invalid is None:
                        exc.index = index  # type: ignore[attr-defined]
                        raise
                    on_invalid(index, exc)
                    continue
                value = encode(record)
                key = prefix + record["user_id"]
                try:
                    if callback is None:
                        send(topic, value, key)
                    else:
                        send(topic, value, key, on_delivery=callback)
                except BufferError:
                    self._wait_for_room(topic, value, key, callback)
                queued += 1
                if queued % POLL_EVERY == 0:
                    poll(0)
                    if queued % 65536 == 0:  # keep received_at current over long runs
                        received_at = datetime.now(timezone.utc)
        finally:
            self.produced += queued
        poll(0)
        return queued

    def _send(self, key: str, value: bytes, on_delivery: DeliveryCallback | None) -> None:
        callback = self._delivery_callback(on_delivery)
        try:
            if callback is None:
                self._producer.produce(self.topic, value, key)
            else:
                self._producer.produce(self.topic, value, key, on_delivery=callback)
        except BufferError:
            self._wait_for_room(self.topic, value, key, callback)
        self.produced += 1

    def _wait_for_room(self, topic: str, value: bytes, key: str, callback: DeliveryCallback | None) -> None:
        """The local queue is full: serve delivery reports until the event fits."""
        extra = {} if callback is None else {"on_delivery": callback}
        while True:
            self._producer.poll(0.05)
            try:
                self._producer.produce(topic, value, key, **extra)
                return
            except BufferError:
                continue

    # --- delivery ------------------------------------------------------------------------

    def _delivery_callback(self, user: DeliveryCallback | None) -> DeliveryCallback | None:
        if user is None:
            return None  # the producer-level on_delivery counts it

        def both(err: Any, msg: Any) -> None:
            self._on_delivery(err, msg)
            user(err, msg)

        return both

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is None:
            self.delivered += 1
            self._broker_error = None
        else:
            self.failed += 1
            self.last_error = err

    def _on_error(self, err: KafkaError) -> None:
        self.last_error = err
        if err.code() in _BROKER_DOWN:
            self._broker_error = err

    @property
    def in_flight(self) -> int:
        """Events queued but not yet acknowledged or failed."""
        return len(self._producer)

    def poll(self, timeout: float = 0) -> int:
        """Serve pending delivery reports; the number served."""
        return self._producer.poll(timeout)

    def flush(self, timeout: float = 30.0) -> int:
        """Wait up to `timeout` seconds for every queued event's delivery report; the number
        still undelivered. Raises KafkaUnavailable when events remain and no broker answers."""
        deadline = time.monotonic() + timeout
        remaining = self._producer.flush(timeout)
        while remaining and time.monotonic() < deadline:  # flush can return early on a signal
            remaining = self._producer.flush(max(0.0, deadline - time.monotonic()))
        if remaining and self._broker_error is not None:
            raise KafkaUnavailable(
                f"Kafka at {self.bootstrap_servers} did not acknowledge {remaining} event(s) within "
                f"{timeout:g}s: {self._broker_error.str()}; they stay queued (retried until "
                "message.timeout.ms, then counted failed)"
            )
        return remaining

    def stats(self) -> dict[str, int]:
        return {"produced": self.produced, "delivered": self.delivered, "failed": self.failed, "in_flight": self.in_flight}

    # --- lifecycle -----------------------------------------------------------------------

    def close(self, timeout: float | None = None) -> int:
        """Flush (up to `timeout`, default close_timeout_s) and stop; the number undelivered."""
        if self._closed:
            return self.in_flight
        try:
            return self.flush(self.close_timeout_s if timeout is None else timeout)
        finally:
            self._closed = True
            _live.discard(self)

    def abort(self) -> int:
        """Drop every queued event (each is reported failed) and close; the number dropped."""
        dropped = self.in_flight
        self._producer.purge()
        self._producer.flush(5)  # serves the purged events' failure reports
        self._closed = True
        _live.discard(self)
        return dropped

    def _check_open(self) -> None:
        if self._closed:
            raise ProducerError("this UsageProducer is closed")

    def __enter__(self) -> UsageProducer:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.close()
        except KafkaException:
            if exc_type is None:
                raise
        except ProducerError:
            if exc_type is None:
                raise

    def __repr__(self) -> str:
        return (
            f"UsageProducer(customer_id={self.customer_id!r}, topic={self.topic!r}, schema_id={self.schema_id}, "
            f"produced={self.produced}, delivered={self.delivered}, failed={self.failed})"
        )


_live: weakref.WeakSet[UsageProducer] = weakref.WeakSet()


@atexit.register
def _flush_at_exit() -> None:
    """Producers not closed by a `with` block are flushed when the interpreter exits."""
    for producer in list(_live):
        try:
            producer.close()
        except Exception:  # noqa: BLE001 - nothing left to report to at exit
            pass
