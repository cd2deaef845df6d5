"""The wallet agent against the real broker: commands and debits in, ledger and balances out,
each record charged once even when the worker is killed -9 mid-stream.

Each test runs its own worker process (`openmonetize run worker`) with its own app id (consumer
group) and its own topic names, so it shares nothing with the stack's worker or other tests.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from psycopg_pool import ConnectionPool

from deploy.local_stack.kafka import ensure_topics
from openmonetize.billing.money import total
from openmonetize.settings import Settings
from schemas.registry import SchemaRegistry
from schemas.topics import topics
from stream_processors import codecs as worker_codecs
from tests.conftest import eventually, unique
from tests.integration.support import read_topic

ROOT = Path(__file__).parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class IsolatedPipeline:
    """Own topics, own app id, a worker process that can be killed and restarted."""

    def __init__(self, settings: Settings, tmp_path: Path):
        tag = unique("w")
        self.env = {
            **os.environ,
            "WORKER_APP_ID": f"test-{tag}",
            "WORKER_WEB_PORT": str(free_port()),
            "STACK_DIR": str(tmp_path / "stack"),
            "LOG_LEVEL": "WARNING",
            **{f"TOPIC_{name.upper()}": f"{tag}.{name}" for name in (
                "usage_events", "usage_rated", "ledger_entries", "wallet_commands",
                "wallet_balances", "usage_dlq", "wallet_debits", "billing_catalog")},
        }
        self.settings = Settings(**{k.lower(): v for k, v in self.env.items() if k.startswith(("TOPIC_", "WORKER_"))},
                                 kafka_bootstrap=settings.kafka_bootstrap, database_url=settings.database_url,
                                 kafka_partitions=3)
        self.env["KAFKA_PARTITIONS"] = "3"
        self.topics = topics(self.settings)
        ensure_topics(AdminClient({"bootstrap.servers": settings.kafka_bootstrap}), self.topics.all())
        self.pool = ConnectionPool(settings.database_url, min_size=1, max_size=2, open=True)
        self.codecs = worker_codecs.register(SchemaRegistry(self.pool), self.topics)
        self.producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "enable.idempotence": True,
                                  "partitioner": "murmur2_random"})
        self.log = open(tmp_path / "worker.log", "ab")
        self.worker: subprocess.Popen | None = None
        self.bootstrap = settings.kafka_bootstrap

    def start_worker(self) -> None:
        self.worker = subprocess.Popen([sys.executable, "-m", "openmonetize", "run", "worker"], env=self.env,
                                       stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)

    def kill_worker(self) -> None:
        os.killpg(self.worker.pid, signal.SIGKILL)
        self.worker.wait(timeout=10)

    def stop(self) -> None:
        if self.worker and self.worker.poll() is None:
            os.killpg(self.worker.pid, signal.SIGTERM)
            try:
                self.worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill_worker()
        self.pool.close()
        self.log.close()

    # --- inputs --------------------------------------------------------------------------
    def command(self, wallet_id: str, customer_id: str, kind: str, amount: str, command_id: str | None = None) -> None:
        record = {
            "command_id": command_id or unique("cmd"), "customer_id": customer_id, "wallet_id": wallet_id,
            "kind": kind, "amount": Decimal(amount), "expires_at": None, "priority": None, "event_id": None,
            "run_id": None, "reservation_id": None, "reason": None, "requested_at": datetime.now(timezone.utc),
            "metadata": None,
        }
        self.producer.produce(self.topics.wallet_commands.name, key=wallet_id.encode(),
                              value=self.codecs.wallet_command.encode(record))

    def debit(self, wallet_id: str, customer_id: str, event_id: str, credits: Decimal) -> None:
        now = datetime.now(timezone.utc)
        record = {
            "event_id": event_id, "customer_id": customer_id, "user_id": "u1", "team_id": None,
            "event_type": "TOKEN_USAGE", "feature_id": "chat", "provider": "openai", "model": "gpt-4o",
            "input_tokens": 1000, "output_tokens": 100, "cached_input_tokens": None, "image_count": None,
            "image_size": None, "quality": None, "unit_type": None, "quantity": None, "reservation_id": None,
            "timestamp": now - timedelta(seconds=1), "metadata": None, "received_at": now, "source": "http",
            "wallet_id": wallet_id, "credits": credits, "usd_cost": Decimal("0.001"),
            "revenue_usd": credits / 100, "margin_usd": credits / 100 - Decimal("0.001"),
            "burn_table_id": "bt_test", "burn_table_version": 1, "price_version": "test",
            "rated_at": now, "revision": 0,
        }
        self.producer.produce(self.topics.wallet_debits.name, key=wallet_id.encode(),
                              value=self.codecs.rated.encode(record))

    def flush(self) -> None:
        assert self.producer.flush(30) == 0

    # --- outputs -------------------------------------------------------------------------
    def read_all(self, topic: str) -> list:
        return read_topic(self.bootstrap, topic)

    def balances(self) -> dict[str, dict]:
        latest: dict[str, dict] = {}
        for message in self.read_all(self.topics.wallet_balances.name):
            record = self.codecs.wallet_balance.decode(message.value())
            if record["version"] >= latest.get(record["wallet_id"], {"version": -1})["version"]:
                latest[record["wallet_id"]] = record
        return latest

    def ledger_size(self) -> int:
        """Records on the ledger topic (re-emitted entries included): a cheap progress signal."""
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": unique("size")})
        topic = self.topics.ledger_entries.name
        size = sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(3))
        consumer.close()
        return size

    def ledger(self) -> dict[str, dict]:
        """Entries by entry_id: a repeated id (a re-emitted output) must carry the same amount."""
        entries: dict[str, dict] = {}
        for message in self.read_all(self.topics.ledger_entries.name):
            entry = self.codecs.ledger_entry.decode(message.value())
            seen = entries.setdefault(entry["entry_id"], entry)
            assert seen["amount"] == entry["amount"] and seen["balance_after"] == entry["balance_after"], entry
        return entries


@pytest.fixture
def pipeline(settings, tmp_path):
    p = IsolatedPipeline(settings, tmp_path)
    yield p
    p.stop()


def test_commands_and_debits_move_the_balance_once(pipeline):
    wallet, customer = "w:cus_t:user:u1", "cus_t"
    pipeline.command(wallet, customer, "purchase", "100", command_id="p1")
    pipeline.command(wallet, customer, "purchase", "100", command_id="p1")  # a client retry: same id
    for i in range(50):
        pipeline.debit(wallet, customer, f"e{i}", Decimal("1.5"))
    for i in range(10):
        pipeline.debit(wallet, customer, f"e{i}", Decimal("1.5"))  # re-delivered debits
    pipeline.flush()
    pipeline.start_worker()

    balance = eventually(lambda: (b := pipeline.balances().get(wallet)) and b["version"] >= 51 and b,
                         timeout_s=90, what="the wallet's balance after 51 changes")
    assert balance["balance"] == Decimal("25") and balance["available"] == Decimal("25")
    ledger = pipeline.ledger()
    assert len(ledger) == 51
    assert total(e["amount"] for e in ledger.values()) == balance["balance"]
    kinds = sorted(e["kind"] for e in ledger.values())
    assert kinds.count("purchase") == 1 and kinds.count("usage_debit") == 50


def test_kill_9_mid_stream_charges_every_debit_exactly_once(pipeline):
    rng = random.Random(7)
    wallets = [f"w:cus_k:user:u{i}" for i in range(20)]
    expected = {w: Decimal(0) for w in wallets}
    events = []
    for i in range(2000):
        wallet = rng.choice(wallets)
        credits = Decimal(rng.randint(1, 5000)) / 1000
        events.append((wallet, f"ev{i}", credits))
        expected[wallet] -= credits
    pipeline.start_worker()
    for chunk in range(5):
        applied_before = eventually(lambda: pipeline.ledger_size() + 1, what="the ledger topic's watermarks") - 1
        for wallet, event_id, credits in events[chunk * 400:(chunk + 1) * 400]:
            pipeline.debit(wallet, "cus_k", event_id, credits)
            if rng.random() < 0.05:  # client retries reach the wallet too
                pipeline.debit(wallet, "cus_k", event_id, credits)
        pipeline.flush()
        # Kill once this worker has applied part of the chunk: mid-stream, never between chunks.
        eventually(lambda: pipeline.ledger_size() > applied_before, timeout_s=90, interval_s=0.02,
                   what="the restarted worker to apply debits")
        pipeline.kill_worker()
        pipeline.start_worker()

    def settled():
        balances = pipeline.balances()
        off = {w: (balances.get(w, {}).get("balance"), expected[w]) for w in wallets
               if balances.get(w, {}).get("balance") != expected[w]}
        assert not off, f"{len(off)} wallets not at their balance (got, expected), e.g. {list(off.items())[:3]}"
        return balances

    balances = eventually(settled, timeout_s=120, interval_s=1, what="every wallet to settle at its exact balance")
    ledger = pipeline.ledger()
    assert len([e for e in ledger.values() if e["kind"] == "usage_debit"]) == 2000  # each event charged once
    for wallet in wallets:
        assert total(e["amount"] for e in ledger.values() if e["wallet_id"] == wallet) == balances[wallet]["balance"]
