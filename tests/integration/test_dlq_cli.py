"""`openmonetize dlq list|show|retry` against the real broker and schema registry.

Each test has topics of its own (TOPIC_* settings with a unique prefix, passed to the command's
environment), writes DLQ records with the real codec, and runs the command as a subprocess, so
exit codes and output are what an operator sees. Nothing is shared with the stack's worker or
other tests, and the suite can run twice.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from psycopg_pool import ConnectionPool

from openmonetize.dlq.ids import DlqId
from openmonetize.dlq.retry_rules import RETRY_COUNT_HEADER, RETRY_OF_HEADER
from openmonetize.kafka_topics import ensure_topics
from openmonetize.settings import Settings
from schemas.registry import SchemaRegistry
from schemas.topics import topics
from stream_processors import codecs as worker_codecs
from tests.conftest import eventually, unique

ROOT = Path(__file__).parents[2]
PARTITIONS = 3
TOPIC_NAMES = ("usage_events", "usage_rated", "ledger_entries", "wallet_commands", "wallet_balances", "usage_dlq",
               "wallet_debits", "billing_catalog")


class DlqBench:
    """Topics of its own, the real codecs, and the command run with those topic names."""

    def __init__(self, settings: Settings):
        tag = unique("dlq")
        overrides = {f"topic_{name}": f"{tag}.{name}" for name in TOPIC_NAMES}
        self.env = {**os.environ, **{k.upper(): v for k, v in overrides.items()}, "KAFKA_PARTITIONS": str(PARTITIONS)}
        self.settings = Settings(**overrides, kafka_bootstrap=settings.kafka_bootstrap,
                                 database_url=settings.database_url, kafka_partitions=PARTITIONS)
        self.topics = topics(self.settings)
        t = self.topics
        ensure_topics(AdminClient({"bootstrap.servers": settings.kafka_bootstrap}),
                      [t.usage_events, t.wallet_commands, t.wallet_debits, t.usage_rated, t.usage_dlq])
        self.pool = ConnectionPool(settings.database_url, min_size=1, max_size=2, open=True)
        self.codecs = worker_codecs.register(SchemaRegistry(self.pool), self.topics)
        self.bootstrap = settings.kafka_bootstrap
        self.producer = Producer({"bootstrap.servers": self.bootstrap, "enable.idempotence": True,
                                  "partitioner": "murmur2_random"})

    def close(self) -> None:
        self.producer.flush(10)
        self.pool.close()

    def om(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "openmonetize", "dlq", *args], env=self.env, cwd=ROOT,
                              capture_output=True, text=True, timeout=120)

    # --- writing ---------------------------------------------------------------------------
    def produce(self, topic: str, key: bytes | None, value: bytes, timestamp: datetime | None = None) -> tuple[int, int]:
        """Produce one record and wait for its ack: (partition, offset)."""
        delivered = []
        extra = {"timestamp": int(timestamp.timestamp() * 1000)} if timestamp else {}
        self.producer.produce(topic, value, key, on_delivery=lambda err, msg: delivered.append((err, msg)), **extra)
        assert self.producer.flush(30) == 0
        (err, msg), = delivered
        assert err is None, err
        return msg.partition(), msg.offset()

    def usage_event(self, customer_id: str, event_id: str) -> tuple[bytes, bytes, int, int]:
        """A usage event on the source topic, as a customer would send it: (key, value, partition, offset)."""
        now = datetime.now(timezone.utc)
        record = {
            "event_id": event_id, "customer_id": customer_id, "user_id": "u-42", "team_id": None,
            "event_type": "TOKEN_USAGE", "feature_id": "chat", "provider": "openai", "model": "gpt-4o",
            "input_tokens": 1200, "output_tokens": 300, "cached_input_tokens": None, "image_count": None,
            "image_size": None, "quality": None, "unit_type": None, "quantity": None, "reservation_id": None,
            "timestamp": now - timedelta(seconds=5), "metadata": {"run": "dlq-test"}, "received_at": now,
            "source": "kafka",
        }
        key, value = f"{customer_id}:u-42".encode(), self.codecs.usage_event.encode(record)
        partition, offset = self.produce(self.topics.usage_events.name, key, value)
        return key, value, partition, offset

    def wallet_command(self, customer_id: str, command_id: str) -> tuple[bytes, bytes, int, int]:
        wallet_id = f"w:{customer_id}:customer"
        record = {
            "command_id": command_id, "customer_id": customer_id, "wallet_id": wallet_id, "kind": "consume",
            "amount": Decimal("12.5"), "expires_at": None, "priority": None, "event_id": None, "run_id": None,
            "reservation_id": None, "reason": None, "requested_at": datetime.now(timezone.utc), "metadata": None,
        }
        key, value = wallet_id.encode(), self.codecs.wallet_command.encode(record)
        partition, offset = self.produce(self.topics.wallet_commands.name, key, value)
        return key, value, partition, offset

    def dead(self, reason: str, stage: str, source_topic: str, key: bytes | None, value: bytes, source: tuple[int, int],
             event_id: str | None = None, customer_id: str | None = None, failed_at: datetime | None = None,
             detail: str = "") -> DlqId:
        """A DLQ record as the pipeline writes it (keyed like its source record); its id."""
        failed_at = failed_at or datetime.now(timezone.utc)
        record = {
            "reason": reason, "detail": detail or f"test: {reason}", "stage": stage, "source_topic": source_topic,
            "source_partition": source[0], "source_offset": source[1], "key": key, "value": value,
            "event_id": event_id, "customer_id": customer_id, "failed_at": failed_at,
        }
        return DlqId(*self.produce(self.topics.usage_dlq.name, key or b"", self.codecs.dlq.encode(record), failed_at))

    # --- reading ---------------------------------------------------------------------------
    def ends(self, topic: str) -> dict[int, int]:
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": unique("ends")})
        try:
            return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(PARTITIONS)}
        finally:
            consumer.close()

    def read_from(self, topic: str, starts: dict[int, int]) -> list:
        """Every record after `starts` up to today's end offsets."""
        ends = self.ends(topic)
        todo = {p for p in starts if ends[p] > starts[p]}
        if not todo:
            return []
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": unique("read"),
                             "enable.auto.commit": False})
        consumer.assign([TopicPartition(topic, p, starts[p]) for p in todo])
        records = []

        def caught_up():
            for message in consumer.consume(100, timeout=0.2):
                assert message.error() is None, message.error()
                records.append(message)
            return all(any(m.partition() == p and m.offset() == ends[p] - 1 for m in records) for p in todo)

        try:
            eventually(caught_up, timeout_s=30, interval_s=0, what=f"{topic} up to {ends}")
        finally:
            consumer.close()
        return records


@pytest.fixture
def bench(settings):
    b = DlqBench(settings)
    yield b
    b.close()


def _usage_dead(bench: DlqBench, reason: str, customer: str, stage: str = "rate",
                **kwargs) -> tuple[DlqId, bytes, bytes, tuple[int, int]]:
    """A usage event on the source topic and its DLQ record: (DLQ id, key, value, source partition:offset)."""
    event_id = unique("evt")
    key, value, partition, offset = bench.usage_event(customer, event_id)
    dlq_id = bench.dead(reason, stage, bench.topics.usage_events.name, key, value, (partition, offset),
                        event_id=event_id, customer_id=customer, **kwargs)
    return dlq_id, key, value, (partition, offset)


def _json_lines(text: str) -> list[dict]:
    return [orjson.loads(line) for line in text.splitlines() if line.strip()]


# --- list ---------------------------------------------------------------------------------
def test_list_prints_a_table_and_counts_per_reason(bench):
    no_rate, *_ = _usage_dead(bench, "no_rate", "cus_a")
    also_no_rate, *_ = _usage_dead(bench, "no_rate", "cus_b")
    garbage = b"\x07not avro at all"
    undecodable = bench.dead("decode_error", "decode", bench.topics.usage_events.name, None, garbage, (0, 0),
                             detail="magic byte is 7, expected 0 (Confluent wire format)")

    result = bench.om("list")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "FAILED_AT", "REASON", "STAGE", "CUSTOMER", "EVENT_ID", "SOURCE", "DETAIL"]
    rows = {line.split()[0]: line for line in lines[1:4]}
    assert set(rows) == {str(no_rate), str(also_no_rate), str(undecodable)}
    assert "decode_error" in rows[str(undecodable)] and "magic byte is 7" in rows[str(undecodable)]
    assert "cus_a" in rows[str(no_rate)] and bench.topics.usage_events.name in rows[str(no_rate)]
    assert f"3 matching of 3 records read from {bench.topics.usage_dlq.name}" in result.stdout
    counts = {line.split()[0]: line.split()[1] for line in lines if line.startswith("  ")}
    assert counts == {"no_rate": "2", "decode_error": "1"}


def test_list_filters_by_reason_customer_stage_and_time_and_prints_json(bench):
    now = datetime.now(timezone.utc)
    old, *_ = _usage_dead(bench, "too_old", "cus_a", stage="dedupe", failed_at=now - timedelta(hours=3))
    recent_a, *_ = _usage_dead(bench, "no_rate", "cus_a", failed_at=now - timedelta(minutes=45))
    recent_b, *_ = _usage_dead(bench, "unknown_customer", "cus_b", stage="route")

    def ids(*args: str) -> list[str]:
        result = bench.om("list", "--json", *args)
        assert result.returncode == 0, result.stderr
        return [record["id"] for record in _json_lines(result.stdout)]

    assert ids() == [str(old), str(recent_a), str(recent_b)]  # earliest first
    assert ids("--reason", "no_rate", "--reason", "too_old") == [str(old), str(recent_a)]
    assert ids("--customer", "cus_b") == [str(recent_b)]
    assert ids("--stage", "dedupe") == [str(old)]
    assert ids("--since", "1h") == [str(recent_a), str(recent_b)]
    assert ids("--since", (now - timedelta(hours=4)).isoformat(), "--until", "30m") == [str(old), str(recent_a)]
    assert ids("--reason", "insufficient_credits") == []
    assert ids("--limit", "1") == [str(old)]

    result = bench.om("list", "--json", "--customer", "cus_b")
    (record,) = _json_lines(result.stdout)
    assert record["reason"] == "unknown_customer" and record["stage"] == "route"
    assert record["customer_id"] == "cus_b" and record["source_topic"] == bench.topics.usage_events.name
    assert record["key"] == "cus_b:u-42" and record["value_bytes"] > 5
    assert "1 matching of 3" in result.stderr and "unknown_customer  1" in result.stderr  # the summary, off stdout

    limited = bench.om("list", "--limit", "1")
    assert "the earliest 1 shown, --limit 0 shows all" in limited.stdout


# --- show ---------------------------------------------------------------------------------
def test_show_decodes_the_original_usage_event_and_wallet_command(bench):
    usage, _, value, source = _usage_dead(bench, "no_rate", "cus_s")
    key, command_value, partition, offset = bench.wallet_command("cus_s", "cmd-1")
    command = bench.dead("invalid_command", "debit", bench.topics.wallet_commands.name, key, command_value,
                         (partition, offset), customer_id="cus_s", detail="amount must be > 0")

    result = bench.om("show", str(usage), str(command))

    assert result.returncode == 0, result.stderr
    assert f"{bench.topics.usage_dlq.name} {usage}" in result.stdout
    assert f"source         {bench.topics.usage_events.name} {source[0]}:{source[1]} (present)" in result.stdout
    assert "decoded with usage_event.avsc" in result.stdout and '"model": "gpt-4o"' in result.stdout
    assert "decoded with wallet_command.avsc" in result.stdout and '"amount": "12.500000000000"' in result.stdout
    assert "key            w:cus_s:customer" in result.stdout

    as_json = {r["id"]: r for r in _json_lines(bench.om("show", "--json", str(usage), str(command)).stdout)}
    assert as_json[str(usage)]["value"]["input_tokens"] == 1200
    assert as_json[str(usage)]["value_error"] is None and as_json[str(usage)]["retry_count"] == 0
    assert as_json[str(command)]["value"]["command_id"] == "cmd-1"
    assert as_json[str(command)]["detail"] == "amount must be > 0"
    assert base64.b64decode(as_json[str(usage)]["value_base64"]) == value


def test_show_gives_undecodable_originals_in_base64_and_hex_with_the_error(bench):
    garbage = b"\x00\x00\x0f\x42\x3fgarbage"  # a Confluent header naming a schema id nobody registered
    dlq_id = bench.dead("decode_error", "decode", bench.topics.usage_events.name, b"k", garbage, (0, 0))

    result = bench.om("show", str(dlq_id))

    assert result.returncode == 0, result.stderr
    assert "not decoded: schema id 999999 could not be resolved" in result.stdout
    assert "base64  AAAPQj9nYXJiYWdl" in result.stdout
    assert "hex     00 00 0f 42 3f 67 61 72 62 61 67 65" in result.stdout


# --- bad usage ----------------------------------------------------------------------------
@pytest.mark.parametrize("command", [[], ["list"], ["show"], ["retry"]], ids=lambda c: " ".join(c) or "dlq")
def test_help_on_every_dlq_command(bench, command):
    result = bench.om(*command, "--help")
    assert result.returncode == 0 and result.stdout.startswith("Usage: ")
    assert f"dlq {command[0] if command else ''}".strip() in result.stdout.splitlines()[0]
    if command == ["retry"]:
        assert "the pipeline dedupes by event id and command id" in " ".join(result.stdout.split())


def test_bad_ids_unknown_reasons_and_missing_choices_are_clear_errors(bench):
    dlq_id, *_ = _usage_dead(bench, "no_rate", "cus_e")

    bad = bench.om("show", "abc")
    assert bad.returncode == 2 and "'abc' is not a DLQ record id: expected PARTITION:OFFSET" in bad.stderr

    for missing, message in [
        (f"{PARTITIONS}:0", f"has partitions 0..{PARTITIONS - 1}"),
        (f"{dlq_id.partition}:{dlq_id.offset + 100}", f"partition {dlq_id.partition} ends at offset {dlq_id.offset}"),
    ]:
        result = bench.om("show", str(dlq_id), missing)
        assert result.returncode == 1, result.stderr
        assert f"error: no DLQ record {missing}: " in result.stderr and message in result.stderr
        assert f"{bench.topics.usage_dlq.name} {dlq_id}" in result.stdout  # the good one is still shown

    unknown = bench.om("list", "--reason", "out_of_credit")
    assert unknown.returncode == 2 and "'out_of_credit' is not one of 'decode_error'" in unknown.stderr
    assert bench.om("list", "--since", "last tuesday").returncode == 2
    assert bench.om("list", "--since", "1h", "--until", "2h").returncode == 2

    neither = bench.om("retry", str(dlq_id))
    assert neither.returncode == 2 and "give --dry-run to see what would be retried, or --yes" in neither.stderr
    both = bench.om("retry", str(dlq_id), "--reason", "no_rate", "--dry-run")
    assert both.returncode == 2 and "give IDs or --reason, not both" in both.stderr
    nothing = bench.om("retry", "--yes")
    assert nothing.returncode == 2 and "give the IDs to retry" in nothing.stderr
    assert bench.om("retry", str(dlq_id), "--customer", "cus_e", "--yes").returncode == 2
    assert bench.om("retry", "1:x", "--yes").returncode == 2

    not_there = bench.om("retry", f"{dlq_id.partition}:{dlq_id.offset + 100}", "--yes")
    assert not_there.returncode == 1 and "retried 0, failed 1, skipped 0 of 1" in not_there.stdout


# --- retry --------------------------------------------------------------------------------
def test_retry_dry_run_produces_nothing(bench):
    dlq_id, *_ = _usage_dead(bench, "no_rate", "cus_d")
    before = bench.ends(bench.topics.usage_events.name)

    result = bench.om("retry", str(dlq_id), "--dry-run")

    assert result.returncode == 0, result.stderr
    assert "would retry (#1)" in result.stdout
    assert "dry run, nothing produced: would retry 1, failed 0, skipped 0 of 1" in result.stdout
    assert bench.ends(bench.topics.usage_events.name) == before


def test_retry_reproduces_the_original_bytes_and_stops_at_the_retry_limit(bench):
    first, key, value, source = _usage_dead(bench, "unknown_customer", "cus_r", stage="route")
    events = bench.topics.usage_events.name
    before = bench.ends(events)

    result = bench.om("retry", str(first), "--yes", "--max-retries", "1")

    assert result.returncode == 0, result.stderr
    assert "retried 1, failed 0, skipped 0 of 1" in result.stdout
    (retried,) = bench.read_from(events, before)
    assert retried.key() == key and retried.value() == value
    assert retried.partition() == source[0]  # the same key, the same partitioner: the same partition
    headers = dict(retried.headers())
    assert headers[RETRY_OF_HEADER] == str(first).encode() and headers[RETRY_COUNT_HEADER] == b"1"

    # The retried record fails again: the pipeline dead-letters it, pointing at the retried copy.
    again = bench.dead("unknown_customer", "route", events, key, value, (retried.partition(), retried.offset()),
                       customer_id="cus_r")
    shown = bench.om("show", str(again))
    assert f"retried        1 time(s), last from DLQ {first}" in shown.stdout

    before = bench.ends(events)
    at_limit = bench.om("retry", str(again), "--yes", "--max-retries", "1")
    assert at_limit.returncode == 0, at_limit.stderr
    assert "already retried 1 time(s), the limit is 1 (--max-retries)" in at_limit.stdout
    assert "retried 0, failed 0, skipped 1 of 1" in at_limit.stdout
    assert bench.ends(events) == before

    below_limit = bench.om("retry", str(again), "--yes", "--json")  # default --max-retries 3
    assert below_limit.returncode == 0, below_limit.stderr
    outcome = orjson.loads(below_limit.stdout)
    assert outcome["retried"] == 1 and outcome["records"][0]["retry_count"] == 2
    (second,) = bench.read_from(events, before)
    assert second.value() == value and dict(second.headers())[RETRY_COUNT_HEADER] == b"2"
    assert dict(second.headers())[RETRY_OF_HEADER] == str(again).encode()


def test_retry_by_reason_refuses_records_from_other_topics(bench):
    wanted, key, value, _ = _usage_dead(bench, "no_rate", "cus_x")
    _usage_dead(bench, "no_rate", "cus_y")  # another customer: not selected
    _usage_dead(bench, "too_old", "cus_x", stage="dedupe")  # another reason: not selected
    rated = bench.topics.usage_rated.name
    refused = bench.dead("no_rate", "rate", rated, key, value, (0, 0), customer_id="cus_x")
    before = bench.ends(bench.topics.usage_events.name)

    result = bench.om("retry", "--reason", "no_rate", "--customer", "cus_x", "--yes", "--no-progress")

    assert result.returncode == 1, result.stderr
    assert "retried 1, failed 1, skipped 0 of 2" in result.stdout
    refusal = next(line for line in result.stdout.splitlines() if line.startswith(str(refused)))
    assert f"refused: source topic '{rated}' is not a pipeline input topic" in refusal
    (retried,) = bench.read_from(bench.topics.usage_events.name, before)
    assert dict(retried.headers())[RETRY_OF_HEADER] == str(wanted).encode()
    assert bench.ends(rated) == {p: 0 for p in range(PARTITIONS)}
