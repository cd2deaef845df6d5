"""A pipeline of its own for fault tests: own topic names, own app id (consumer group), and
worker processes (`openmonetize run worker`) that can be killed and restarted, so a test shares
nothing with the stack's worker or with other tests.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from psycopg_pool import ConnectionPool

from deploy.local_stack.processes import free_port
from openmonetize.billing.burn_tables import BurnTable, parse_rules
from openmonetize.catalog.publisher import CatalogPublisher
from openmonetize.catalog.records import BurnTableRecord
from openmonetize.kafka_topics import ensure_topics
from openmonetize.settings import Settings
from schemas.registry_client import open_registry
from schemas.topics import topics
from schemas.usage_event import EventLimits, convert_event, to_record
from stream_processors import codecs as worker_codecs
from tests.conftest import unique
from tests.integration.support import read_topic

ROOT = Path(__file__).parents[2]



def rated_record(wallet_id: str, customer_id: str, event_id: str, credits: Decimal) -> dict:
    """A rated usage record (what the usage agent sends the wallet agent, and the wallet agent
    usage.rated) for `credits`, by user u1."""
    now = datetime.now(timezone.utc)
    return {
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


class IsolatedPipeline:
    """Own topics, own app id, a worker process that can be killed and restarted."""

    def __init__(self, settings: Settings, tmp_path: Path, env: dict[str, str] | None = None):
        """`env`: settings of this pipeline's processes and of its own codecs (e.g. SCHEMA_REGISTRY_URL)."""
        tag = unique("w")
        self.env = {
            **os.environ,
            "WORKER_APP_ID": f"test-{tag}",
            "STACK_DIR": str(tmp_path / "stack"),
            "LOG_LEVEL": os.environ.get("ISOLATED_LOG_LEVEL", "WARNING"),
            **self.topic_env(tag),
            **(env or {}),
        }
        own = ("TOPIC_", "WORKER_", "SCHEMA_REGISTRY_URL", "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO")
        self.settings = Settings(**{k.lower(): v for k, v in self.env.items() if k.startswith(own)},
                                 kafka_bootstrap=settings.kafka_bootstrap, database_url=settings.database_url,
                                 kafka_partitions=3)
        self.env["KAFKA_PARTITIONS"] = "3"
        self.topics = topics(self.settings)
        ensure_topics(AdminClient({"bootstrap.servers": settings.kafka_bootstrap}), self.topics.all())
        self.pool = ConnectionPool(settings.database_url, min_size=1, max_size=2, open=True)
        self.codecs = worker_codecs.register(open_registry(self.settings, self.pool), self.topics)
        self.producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "enable.idempotence": True,
                                  "partitioner": "murmur2_random"})
        self.log = open(tmp_path / "worker.log", "ab")
        self.workers: dict[str, subprocess.Popen] = {}
        self.commands: dict[str, tuple[str, dict[str, str]]] = {}
        self.held: set[str] = set()  # killed or stopped by the test: not restarted behind its back
        self.exits: list[tuple[str, int]] = []  # (name, exit code) of every exit the test did not ask for
        self.ports: dict[str, str] = {}
        self.bootstrap = settings.kafka_bootstrap
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._supervisor = threading.Thread(target=self._supervise, daemon=True)
        self._supervisor.start()

    @staticmethod
    def topic_env(tag: str) -> dict[str, str]:
        """The TOPIC_* settings of a pipeline's own topics (pass them in `env` to share them)."""
        return {f"TOPIC_{name.upper()}": f"{tag}.{name}" for name in (
            "usage_events", "usage_rated", "ledger_entries", "wallet_commands",
            "wallet_balances", "usage_dlq", "wallet_debits", "billing_catalog")}

    def start_worker(self, name: str = "w1") -> None:
        """Start (or restart) worker `name`; each name keeps its web port, hence its data dir."""
        port = self.ports.setdefault(name, str(free_port()))
        self.start_service(name, "worker", {"WORKER_WEB_PORT": port})

    def start_service(self, name: str, service: str, env: dict[str, str] | None = None) -> None:
        """Start (or restart) `openmonetize run <service>` as process `name` with this pipeline's
        topics; kill_worker/stop_worker/stop handle it like a worker."""
        with self._lock:
            self.commands[name] = (service, env or {})
            self._spawn(name)
            self.held.discard(name)

    def _spawn(self, name: str) -> None:
        service, env = self.commands[name]
        self.workers[name] = subprocess.Popen(
            [sys.executable, "-m", "openmonetize", "run", service], env={**self.env, **env},
            stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)

    def _supervise(self) -> None:
        """What the stack's supervisor does for its worker: a process that exits on its own (a
        worker exits on purpose when a batch cannot be applied, to read it again from the
        markers) is started again; `exits` says so."""
        while not self._closing.wait(0.2):
            with self._lock:
                for name, process in self.workers.items():
                    code = process.poll()
                    if code is not None and name not in self.held:
                        self.exits.append((name, code))
                        self.log.write(f"--- {name} exited with {code}; restarting it\n".encode())
                        self.log.flush()
                        self._spawn(name)

    def kill_worker(self, name: str = "w1") -> None:
        with self._lock:
            self.held.add(name)
        os.killpg(self.workers[name].pid, signal.SIGKILL)
        self.workers[name].wait(timeout=10)

    def stop_worker(self, name: str = "w1") -> None:
        """A graceful stop (SIGTERM): the worker leaves the group and its partitions move."""
        with self._lock:
            self.held.add(name)
        worker = self.workers[name]
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill_worker(name)

    def stop(self) -> None:
        self._closing.set()
        self._supervisor.join()
        for name in self.workers:
            self.stop_worker(name)
        self.pool.close()
        self.log.close()
        self._print_stalls()

    def _print_stalls(self) -> None:
        """A worker that held a batch too long logged where it was stuck (stream_processors/
        stall_watch.py): printed here, so that a failing test's report shows it (CI keeps no
        worker log)."""
        for line in Path(self.log.name).read_text(errors="replace").splitlines():
            if "batch held too long" in line:
                print(line[:20_000])

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
        self.producer.produce(self.topics.wallet_debits.name, key=wallet_id.encode(),
                              value=self.codecs.rated.encode(rated_record(wallet_id, customer_id, event_id, credits)))

    def burn_table(self, customer_id: str, rules: dict) -> BurnTable:
        """Publish a burn table (in force for the last 40 days) to this pipeline's catalog topic."""
        created = datetime.now(timezone.utc)
        table = BurnTable(f"bt_{customer_id}", customer_id, "standard", 1, created - timedelta(days=40), parse_rules(rules))
        publisher = CatalogPublisher(self.settings)
        try:
            publisher.publish([BurnTableRecord(table, created, created)])
        finally:
            publisher.close()
        return table

    def event(self, fields: dict) -> dict:
        """Produce one usage event (the loadgen's JSON-ready dict) to usage.events, as the edge would."""
        received = datetime.now(timezone.utc)
        record = to_record(convert_event(fields), customer_id=fields["customer_id"], source="kafka",
                           received_at=received, limits=EventLimits.from_settings(self.settings))
        self.producer.produce(self.topics.usage_events.name, key=f"{record['customer_id']}:{record['user_id']}".encode(),
                              value=self.codecs.usage_event.encode(record))
        self.producer.poll(0)
        return record

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

    def committed(self, topic: str) -> int:
        """The worker group's committed offsets on `topic`, summed over its partitions."""
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.env["WORKER_APP_ID"]})
        try:
            found = consumer.committed([TopicPartition(topic, p) for p in range(3)], timeout=10)
        finally:
            consumer.close()
        return sum(max(tp.offset, 0) for tp in found)

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
