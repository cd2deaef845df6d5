"""The whole pipeline under load: usage.events → usage agent → wallet.debits → wallet agent → ledger.entries.

Each run has its own topics (prefix `bench-<id>.`), its own Faust app id (consumer group and
tables) and its own worker processes (`openmonetize run worker`, as tests/integration's
isolated pipelines do), so nothing is shared with the stack's worker or an earlier run. The
stack provides Kafka, Postgres, the API (schema registry, burn tables) and the billing catalog.

Set-up, once: --tenants fresh tenants, each with a burn table that rates every event the load
generator makes (POST /v1/burn-tables). Then, per run:

1. fund (--funded-users): one worker applies purchases for each tenant's first users and its
   teams, so routing spreads debits over user, team and customer wallets as in production
   (the rest goes to the customer wallet, unfunded: the default policy charges it anyway);
   the worker is then stopped;
2. backlog: a separate process (deploy/bench/pipeline_load.py: EventGenerator + UsageProducer,
   5% client retries, 1% late events) puts --events events on usage.events and exits;
3. ceiling: deploy.bench.kafka_raw's produce and consume, --events records of the average
   encoded event size, on this broker, with no worker running;
4. `pipeline_events_per_s`: --workers worker processes start and drain the backlog; the rate is
   the distinct events (the ledger must hold one `usage_debit` per event, retries excluded)
   over the time from the usage agent's first output (the first wallet.debits record) to the
   last ledger entry (Kafka timestamps), so worker start-up is left out and reported apart.
   Progress comes from the watermarks; at the end every ledger entry is read (a few fields
   parsed straight from the Avro bytes) to check the count of distinct events charged;
5. steady: the load process produces --rate events/s (default half the first run's backlog
   rate) for --duration seconds while the workers run (its events made before it starts);
   `ingest_to_ledger_p50_ms` / `p99_ms` are, per event, the ledger entry's Kafka timestamp
   minus its usage.events record's Kafka timestamp (set when UsageProducer queued it, so its
   linger of 20 ms is included);
6. the peak RSS of each worker (VmHWM), then the workers stop and the run's topics go.

Each figure is the median of --runs runs with min-max beside it; results are merged into
bench-results.json (keys without a suffix for 1 worker, `_<n>w` for n workers).

    python -m deploy.bench.pipeline --events 1000000 --runs 3 --workers 1,2
    python -m deploy.bench.pipeline --quick      # 100,000 events, 1 run, 15 s steady phase
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import httpx
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from deploy.bench import kafka_raw
from deploy.bench.ingest_http import cpu_seconds, stack_pids
from deploy.bench.results import RESULTS, merge_results
from deploy.local_stack.processes import free_port
from openmonetize import wallet_ids
from openmonetize.kafka_topics import ensure_topics
from openmonetize.settings import Settings, get_settings
from schemas.codec import schema_text
from schemas.registry_client import registry_session
from schemas.topics import Topics, topics
from stream_processors import codecs as worker_codecs

ROOT = Path(__file__).resolve().parents[2]
PROGRESS_EVERY_S = 2.0
STALL_S = 180.0  # no new ledger entry for this long (worker start-up included): the run failed
TEAMS = 7  # producers/loadgen.py: team-{user % 7}

# Rates every event producers/loadgen.EventGenerator makes (chat and embedding models by the
# default token rule, images, audio seconds and characters, custom units), so nothing goes to
# the DLQ as no_rate.
RULES = {
    "default": {"input_tokens": "2.5", "output_tokens": "10", "cached_input_tokens": "1.25", "per_unit": 1000},
    "gpt-4o-mini": {"input_tokens": "0.15", "output_tokens": "0.6", "cached_input_tokens": "0.075", "per_unit": 1000},
    "claude-3-5-haiku-20241022": {"input_tokens": "0.8", "output_tokens": "4", "per_unit": 1000},
    "IMAGE_GENERATION": {"images": {"1024x1024": "40", "1024x1024:hd": "80"}, "image": "60"},
    "AUDIO:seconds": {"unit": "0.1"},
    "AUDIO:characters": {"unit": "0.015"},
    "CUSTOM": {"unit": "1"},
}
RUN_TOPICS = ("usage_events", "usage_rated", "ledger_entries", "wallet_commands", "wallet_balances", "usage_dlq",
              "wallet_debits")  # not the billing catalog: the API publishes the burn tables to the stack's


# --- a few fields straight from the Avro bytes ------------------------------------------------
# Counting a million ledger entries with the full decoder would cost the box more CPU than the
# pipeline it measures; the fields needed come first in both schemas, so read just those.

def _long(buf: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7


def _bytes(buf: bytes, pos: int) -> tuple[bytes, int]:
    n, pos = _long(buf, pos)
    return buf[pos:pos + n], pos + n


def _schema_prefix(file_name: str) -> list[tuple[str, object]]:
    return [(f["name"], f["type"]) for f in json.loads(schema_text(file_name))["fields"]]


LEDGER_PREFIX = [("entry_id", "string"), ("customer_id", "string"), ("wallet_id", "string"), ("kind", "string"),
                 ("amount", "bytes"), ("balance_after", "bytes"), ("event_id", ["null", "string"])]


def _check_prefixes() -> None:
    ledger = [(n, t if not isinstance(t, dict) else t["type"]) for n, t in _schema_prefix("ledger_entry.avsc")[:7]]
    usage = _schema_prefix("usage_event.avsc")[:1]
    if ledger != LEDGER_PREFIX or usage != [("event_id", "string")]:
        raise SystemExit("deploy/bench/pipeline.py reads the first fields of ledger_entry.avsc and usage_event.avsc "
                         f"directly and they changed ({ledger}, {usage}): update LEDGER_PREFIX and ledger_fields")


def ledger_fields(value: bytes) -> tuple[bytes, bytes, bytes | None]:
    """(entry_id, kind, event_id) of a Confluent-framed ledger entry."""
    entry_id, pos = _bytes(value, 5)
    _, pos = _bytes(value, pos)  # customer_id
    _, pos = _bytes(value, pos)  # wallet_id
    kind, pos = _bytes(value, pos)
    _, pos = _bytes(value, pos)  # amount
    _, pos = _bytes(value, pos)  # balance_after
    branch, pos = _long(value, pos)
    return entry_id, kind, (_bytes(value, pos)[0] if branch == 1 else None)


def usage_event_id(value: bytes) -> bytes:
    return _bytes(value, 5)[0]


# --- Kafka helpers -------------------------------------------------------------------------

class Offsets:
    """Watermarks of the run's topics, with one group-less consumer."""

    def __init__(self, bootstrap: str, partitions: int):
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-offsets-{uuid.uuid4().hex[:8]}",
                                  "enable.auto.commit": False})
        self.partitions = partitions

    def high(self, topic: str) -> dict[int, int]:
        return {p: self.consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in range(self.partitions)}

    def count_since(self, topic: str, start: dict[int, int]) -> int:
        return sum(h - start[p] for p, h in self.high(topic).items())

    def close(self) -> None:
        self.consumer.close()


def read_range(bootstrap: str, topic: str, start: dict[int, int], end: dict[int, int], handle) -> int:
    """Call handle(value, kafka_timestamp_ms) for every record in [start, end) of each partition."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-read-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "fetch.max.bytes": 52_428_800, "fetch.wait.max.ms": 50})
    pending = {p for p in start if end[p] > start[p]}
    consumer.assign([TopicPartition(topic, p, start[p]) for p in pending])
    seen = 0
    deadline = time.monotonic() + 600
    try:
        while pending and time.monotonic() < deadline:
            for message in consumer.consume(10_000, timeout=0.5):
                if message.error() is not None:
                    continue
                p, offset = message.partition(), message.offset()
                if offset < end[p]:
                    handle(message.value(), message.timestamp()[1])
                    seen += 1
                if offset + 1 >= end[p]:
                    pending.discard(p)
            if pending:
                for tp in consumer.position([TopicPartition(topic, p) for p in list(pending)]):
                    if tp.offset >= end[tp.partition]:
                        pending.discard(tp.partition)
    finally:
        consumer.close()
    if pending:
        raise RuntimeError(f"could not read {topic} to its end offsets (partitions {sorted(pending)} short)")
    return seen


def edge_timestamps(bootstrap: str, topic: str, start: dict[int, int], end: dict[int, int]) -> tuple[int, int]:
    """(earliest, latest) Kafka timestamp in [start, end) of every partition, reading only the
    first and the last record of each (one producer writes a partition in time order)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-edge-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False})
    stamps = []
    try:
        for p in (p for p in start if end[p] > start[p]):
            for offset in {start[p], end[p] - 1}:
                consumer.assign([TopicPartition(topic, p, offset)])
                deadline = time.monotonic() + 30
                while True:
                    message = consumer.poll(1.0)
                    if message is not None and message.error() is None:
                        stamps.append(message.timestamp()[1])
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"could not read {topic}[{p}]@{offset}")
    finally:
        consumer.close()
    return min(stamps), max(stamps)



def peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        return None
    return None


def quantile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


# --- tenants ---------------------------------------------------------------------------------

def create_tenants(settings: Settings, count: int) -> list[str]:
    """Fresh tenants, each with the burn table RULES; returns their customer ids."""
    import psycopg

    from openmonetize.stores.tenants import create_customer

    tag = uuid.uuid4().hex[:6]
    created = []
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        for i in range(count):
            created.append(create_customer(conn, f"bench-pipeline-{tag}-{i + 1}"))
    for tenant in created:
        response = httpx.post(
            f"{settings.api_url}/v1/burn-tables", headers={"X-OM-Api-Key": tenant.api_key}, timeout=30,
            json={"name": "bench", "rules": RULES,
                  "effective_from": (datetime.now(timezone.utc) - timedelta(days=40)).isoformat()},
        )
        if response.status_code != 201:
            raise SystemExit(f"POST /v1/burn-tables answered {response.status_code}: {response.text}")
    return [t.customer_id for t in created]


# --- one run ---------------------------------------------------------------------------------

@dataclass
class Options:
    events: int
    runs: int
    workers: list[int]
    partitions: int
    tenants: int
    users: int
    funded_users: int
    duplicates: float
    late: float
    rate: float | None
    duration: float
    seed: int
    keep: bool
    save: bool


@dataclass
class RunResult:
    workers: int
    ceiling_produce: float = 0.0
    ceiling_consume: float = 0.0
    backlog_sent: int = 0
    backlog_distinct: int = 0
    avg_event_bytes: float = 0.0
    backlog_produce_events_per_s: float = 0.0
    pipeline_events_per_s: float = 0.0
    startup_s: float = 0.0
    usage_agent_s: float = 0.0
    wallet_agent_s: float = 0.0
    first_entry_after_s: float = 0.0
    worker_cores_busy: float = 0.0
    broker_cores_busy: float = 0.0
    worker_cpu_us_per_event: float = 0.0  # worker CPU seconds over the drain / distinct events
    steady_rate: float = 0.0
    steady_sent: int = 0
    steady_matched: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    p50_first_fifth_ms: float = 0.0
    p50_last_fifth_ms: float = 0.0
    catch_up_s: float = 0.0
    kept_up: bool = True
    peak_rss_mb: list[float] = field(default_factory=list)
    dlq: int = 0
    repeated_entries: int = 0

    @property
    def ceiling(self) -> float:
        return min(self.ceiling_produce, self.ceiling_consume)


class Run:
    def __init__(self, settings: Settings, opts: Options, customers: list[str], workers: int, index: int):
        self.opts = opts
        self.customers = customers
        self.workers_wanted = workers
        self.index = index
        self.bootstrap = settings.kafka_bootstrap
        self.tag = f"bench-{uuid.uuid4().hex[:8]}"
        self.dir = Path(f"/tmp/om-{self.tag}")
        self.dir.mkdir(parents=True)
        overrides = {f"TOPIC_{name.upper()}": f"{self.tag}.{name.replace('_', '.')}" for name in RUN_TOPICS}
        self.env = {
            **os.environ,
            **overrides,
            "WORKER_APP_ID": self.tag,
            "STACK_DIR": str(self.dir),
            "KAFKA_PARTITIONS": str(opts.partitions),
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
        self.settings = Settings(**{k.lower(): v for k, v in overrides.items()}, kafka_partitions=opts.partitions,
                                 kafka_bootstrap=settings.kafka_bootstrap, database_url=settings.database_url,
                                 api_url=settings.api_url)
        self.topics: Topics = topics(self.settings)
        self.admin = AdminClient({"bootstrap.servers": self.bootstrap})
        ensure_topics(self.admin, [getattr(self.topics, name) for name in RUN_TOPICS])
        self.offsets = Offsets(self.bootstrap, opts.partitions)
        self.workers: list[subprocess.Popen] = []
        self.ports: list[int] = []
        self.broker_pid = stack_pids(settings.stack_dir).get("kafka")
        self.result = RunResult(workers)

    def say(self, text: str) -> None:
        print(f"[run {self.index + 1}, {self.workers_wanted} worker(s)] {text}", flush=True)

    # --- processes ---
    def start_workers(self, n: int) -> None:
        for i in range(n):
            if len(self.ports) <= i:
                self.ports.append(free_port())
            log = open(self.dir / f"worker-{i}.log", "ab")  # noqa: SIM115 - the child keeps it
            self.workers.append(subprocess.Popen(
                [sys.executable, "-m", "openmonetize", "run", "worker"], cwd=ROOT, start_new_session=True,
                env={**self.env, "WORKER_WEB_PORT": str(self.ports[i])}, stdout=log, stderr=subprocess.STDOUT))
            log.close()

    def stop_workers(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGTERM)
        for worker in self.workers:
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(timeout=10)
        self.workers = []

    def check_workers(self) -> None:
        for i, worker in enumerate(self.workers):
            if worker.poll() is not None:
                tail = (self.dir / f"worker-{i}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"worker {i} exited with {worker.returncode}; its log ends:\n{tail}")

    def load(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "deploy.bench.pipeline_load", "--customers", ",".join(self.customers),
             "--users", str(self.opts.users), "--duplicates", str(self.opts.duplicates), "--late", str(self.opts.late),
             *args], cwd=ROOT, env=self.env, stdout=subprocess.PIPE, text=True)

    @staticmethod
    def load_summary(proc: subprocess.Popen) -> dict:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"the load process failed ({proc.returncode}): {out[-2000:]}")
        return json.loads(out.strip().splitlines()[-1])

    def cpu(self) -> tuple[float, float]:
        workers = sum(cpu_seconds(w.pid) for w in self.workers)
        return workers, (cpu_seconds(self.broker_pid) if self.broker_pid else 0.0)

    # --- phases ---
    def fund(self) -> None:
        if not self.opts.funded_users:
            return
        with registry_session(self.settings) as registry:
            codecs = worker_codecs.register(registry, self.topics)
        fields = [f["name"] for f in json.loads(schema_text(self.topics.wallet_commands.schema_file))["fields"]]
        producer = Producer({"bootstrap.servers": self.bootstrap, "enable.idempotence": True,
                             "partitioner": "murmur2_random", "linger.ms": 20})
        wallets = []  # (customer, wallet): each tenant's first users, and all its teams
        for customer in self.customers:
            wallets += [(customer, wallet_ids.user_wallet(customer, f"user-{u}")) for u in range(self.opts.funded_users)]
            wallets += [(customer, wallet_ids.team_wallet(customer, f"team-{t}")) for t in range(TEAMS)]
        for customer, wallet in wallets:
            record = dict.fromkeys(fields)
            record.update(command_id=f"{self.tag}-fund-{wallet}", customer_id=customer, wallet_id=wallet,
                          kind="purchase", amount=Decimal("100000000"), requested_at=datetime.now(timezone.utc))
            producer.produce(self.topics.wallet_commands.name, key=wallet.encode(),
                             value=codecs.wallet_command.encode(record))
        if producer.flush(60):
            raise RuntimeError("purchase commands not acknowledged")
        start = self.offsets.high(self.topics.ledger_entries.name)
        started = time.monotonic()
        self.say(f"funding {len(wallets):,} wallets (one worker applies the purchases, then stops)")
        self.start_workers(1)
        while self.offsets.count_since(self.topics.ledger_entries.name, start) < len(wallets):
            self.check_workers()
            if time.monotonic() - started > STALL_S:
                raise RuntimeError("the purchases were not applied in time")
            time.sleep(0.5)
        self.stop_workers()
        self.say(f"funded in {time.monotonic() - started:.1f}s (worker start and stop included)")

    def backlog(self) -> None:
        self.say(f"producing a backlog of {self.opts.events:,} events in a separate process")
        summary = self.load_summary(self.load("--events", str(self.opts.events),
                                              "--seed", str(self.opts.seed + 1000 * self.index)))
        r = self.result
        r.backlog_sent, r.backlog_distinct, r.avg_event_bytes = summary["sent"], summary["distinct"], summary["avg_value_bytes"]
        r.backlog_produce_events_per_s = summary["sent"] / summary["elapsed_s"]
        on_topic = self.offsets.count_since(self.topics.usage_events.name, dict.fromkeys(range(self.opts.partitions), 0))
        if on_topic < r.backlog_sent:
            raise RuntimeError(f"only {on_topic:,} of {r.backlog_sent:,} events are on {self.topics.usage_events.name}")
        self.say(f"backlog on the topic: {r.backlog_sent:,} events ({summary['duplicates']:,} client retries, "
                 f"{r.backlog_distinct:,} distinct), {r.avg_event_bytes:.0f} B each on average, "
                 f"produced at {r.backlog_produce_events_per_s:,.0f} events/s")

    def ceiling(self) -> None:
        size = round(self.result.avg_event_bytes)
        topic = f"{self.tag}.raw"
        self.admin.create_topics([NewTopic(topic, self.opts.partitions, 1)])[topic].result()
        try:
            self.result.ceiling_produce = kafka_raw.produce(self.bootstrap, topic, self.opts.events, size)
            self.result.ceiling_consume = kafka_raw.consume(self.bootstrap, topic, self.opts.partitions, self.opts.events)
        finally:
            self.admin.delete_topics([topic])[topic].result()
        self.say(f"kafka ceiling ({self.opts.events:,} x {size} B, no worker running): produce "
                 f"{self.result.ceiling_produce:,.0f} records/s, consume {self.result.ceiling_consume:,.0f} records/s")

    def drain(self) -> None:
        r, ledger = self.result, self.topics.ledger_entries.name
        start = self.offsets.high(ledger)
        self.say(f"starting {self.workers_wanted} worker(s) on the backlog")
        launched = time.time()
        self.start_workers(self.workers_wanted)
        cpu_at_first, wall_at_first = None, None
        last_count, last_change = 0, time.monotonic()
        last_print, count_at_print = time.monotonic(), 0
        no_debits = dict.fromkeys(start, 0)
        while True:
            count = self.offsets.count_since(ledger, start)
            debited = self.offsets.count_since(self.topics.wallet_debits.name, no_debits)
            now = time.monotonic()
            if debited and cpu_at_first is None:
                cpu_at_first, wall_at_first = self.cpu(), now
            if count + debited != last_count:
                last_count, last_change = count + debited, now
            if count >= r.backlog_distinct:
                break
            if now - last_print >= PROGRESS_EVERY_S:
                overall = count / (now - wall_at_first) if wall_at_first and now > wall_at_first else 0.0
                recent = (count - count_at_print) / (now - last_print)
                self.say(f"ledger {count:,} / {r.backlog_distinct:,}: {overall:,.0f} events/s so far, "
                         f"{recent:,.0f} in the last {now - last_print:.0f}s; usage agent has forwarded {debited:,}")
                last_print, count_at_print = now, count
            self.check_workers()
            if now - last_change > STALL_S:
                raise RuntimeError(f"the ledger stopped at {count:,} of {r.backlog_distinct:,} entries "
                                   f"(DLQ: {self.offsets.count_since(self.topics.usage_dlq.name, dict.fromkeys(start, 0)):,}); "
                                   f"worker logs in {self.dir}")
            time.sleep(0.25)
        cpu_done, wall_done = self.cpu(), time.monotonic()
        if cpu_at_first is not None and wall_done > wall_at_first:
            r.worker_cores_busy = (cpu_done[0] - cpu_at_first[0]) / (wall_done - wall_at_first)
            r.broker_cores_busy = (cpu_done[1] - cpu_at_first[1]) / (wall_done - wall_at_first)
            r.worker_cpu_us_per_event = (cpu_done[0] - cpu_at_first[0]) / r.backlog_distinct * 1e6

        # The figure: distinct events charged over the first-to-last ledger timestamps. An entry
        # re-emitted after a rebalance (same event, same deterministic entry id) counts once;
        # wait for stragglers if the watermarks counted such repeats.
        first_ts: dict[bytes, int] = {}  # event_id -> timestamp of its first usage_debit entry
        entries = [0]

        def handle(value: bytes, ts: int) -> None:
            _, kind, event_id = ledger_fields(value)
            if kind == b"usage_debit":
                entries[0] += 1
                first_ts.setdefault(event_id, ts)

        read_from = start
        while True:
            end = self.offsets.high(ledger)
            read_range(self.bootstrap, ledger, read_from, end, handle)
            read_from = end
            if len(first_ts) >= r.backlog_distinct:
                break
            self.check_workers()
            if time.monotonic() - last_change > STALL_S:
                raise RuntimeError(f"{len(first_ts):,} distinct events charged of {r.backlog_distinct:,}")
            time.sleep(1.0)
            if (recount := self.offsets.count_since(ledger, start)) != count:
                count, last_change = recount, time.monotonic()
        if len(first_ts) != r.backlog_distinct:
            raise RuntimeError(f"{len(first_ts):,} distinct events charged, expected {r.backlog_distinct:,}")
        r.repeated_entries = entries[0] - len(first_ts)
        # The window opens with the usage agent's first output (the first wallet.debits record),
        # not the first ledger entry: one worker runs both agents, and the usage agent may work
        # through much of the backlog before the wallet agent writes anything.
        debits = self.topics.wallet_debits.name
        first_debit, last_debit = edge_timestamps(self.bootstrap, debits, dict.fromkeys(start, 0),
                                                  self.offsets.high(debits))
        first_entry, last_entry = min(first_ts.values()), max(first_ts.values())
        r.pipeline_events_per_s = r.backlog_distinct / max((last_entry - first_debit) / 1000, 1e-3)
        r.startup_s = first_debit / 1000 - launched
        r.usage_agent_s = (last_debit - first_debit) / 1000
        r.wallet_agent_s = (last_entry - first_entry) / 1000
        r.first_entry_after_s = (first_entry - first_debit) / 1000
        r.dlq = self.offsets.count_since(self.topics.usage_dlq.name, dict.fromkeys(start, 0))
        self.say(f"backlog drained: {r.backlog_distinct:,} events charged in {(last_entry - first_debit) / 1000:.1f}s "
                 f"from the first wallet.debits record to the last ledger entry = {r.pipeline_events_per_s:,.0f} "
                 f"events/s (the first debit {r.startup_s:.1f}s after the workers were launched; usage agent "
                 f"first to last debit {r.usage_agent_s:.1f}s; wallet agent first to last entry "
                 f"{r.wallet_agent_s:.1f}s, its first entry {r.first_entry_after_s:.1f}s after the first debit); "
                 f"CPU busy: workers {r.worker_cores_busy:.2f} cores ({r.worker_cpu_us_per_event:,.0f} µs per "
                 f"event), broker {r.broker_cores_busy:.2f}; "
                 f"DLQ {r.dlq}, re-emitted entries {r.repeated_entries}")

    def steady(self, rate: float) -> None:
        r, ledger, events = self.result, self.topics.ledger_entries.name, self.topics.usage_events.name
        r.steady_rate = rate
        ledger_start, events_start = self.offsets.high(ledger), self.offsets.high(events)
        self.say(f"steady load: {rate:,.0f} events/s for {self.opts.duration:.0f}s")
        proc = self.load("--rate", str(rate), "--duration", str(self.opts.duration),
                         "--seed", str(self.opts.seed + 1000 * self.index + 500))
        last_print, count_at_print = time.monotonic(), 0
        while proc.poll() is None:
            time.sleep(0.5)
            self.check_workers()
            now = time.monotonic()
            if now - last_print >= PROGRESS_EVERY_S:
                count = self.offsets.count_since(ledger, ledger_start)
                self.say(f"ledger +{count:,}: {(count - count_at_print) / (now - last_print):,.0f} events/s")
                last_print, count_at_print = now, count
        summary = self.load_summary(proc)
        r.steady_sent = summary["sent"]
        distinct = summary["distinct"]
        waited = time.monotonic()
        while self.offsets.count_since(ledger, ledger_start) < distinct:
            self.check_workers()
            if time.monotonic() - waited > STALL_S:
                raise RuntimeError("the steady load did not reach the ledger in time")
            time.sleep(0.25)
        produced: dict[bytes, int] = {}

        def on_event(value: bytes, ts: int) -> None:
            event_id = usage_event_id(value)
            if ts < produced.get(event_id, ts + 1):
                produced[event_id] = ts

        charged: dict[bytes, int] = {}

        def on_entry(value: bytes, ts: int) -> None:
            _, kind, event_id = ledger_fields(value)
            if kind == b"usage_debit" and event_id not in charged:
                charged[event_id] = ts

        read_range(self.bootstrap, events, events_start, self.offsets.high(events), on_event)
        read_range(self.bootstrap, ledger, ledger_start, self.offsets.high(ledger), on_entry)
        pairs = sorted((produced[e], ts - produced[e]) for e, ts in charged.items() if e in produced)
        latencies = sorted(latency for _, latency in pairs)
        fifth = max(1, len(pairs) // 5)  # the first and the last fifth of the load: a rising latency means
        r.p50_first_fifth_ms = quantile(sorted(v for _, v in pairs[:fifth]), 0.5)  # the pipeline fell behind
        r.p50_last_fifth_ms = quantile(sorted(v for _, v in pairs[-fifth:]), 0.5)
        r.catch_up_s = (max(charged.values()) - max(produced.values())) / 1000 if charged else 0.0
        r.steady_matched = len(latencies)
        if not latencies:
            raise RuntimeError("no charged event of the steady load was found on usage.events")
        if r.steady_matched != distinct:
            self.say(f"warning: {r.steady_matched:,} charged events matched, {distinct:,} expected")
        r.p50_ms, r.p99_ms, r.max_ms = quantile(latencies, 0.5), quantile(latencies, 0.99), latencies[-1]
        achieved = summary["sent"] / summary["elapsed_s"]
        self.say(f"steady: {summary['sent']:,} events at {achieved:,.0f} events/s; ingest to ledger p50 "
                 f"{r.p50_ms:.0f} ms, p99 {r.p99_ms:.0f} ms, max {r.max_ms:.0f} ms over {r.steady_matched:,} events; "
                 f"p50 over the first fifth of the load {r.p50_first_fifth_ms:.0f} ms, over the last fifth "
                 f"{r.p50_last_fifth_ms:.0f} ms; last entry {r.catch_up_s:.1f}s after the last event")
        r.kept_up = r.p50_last_fifth_ms <= 2 * r.p50_first_fifth_ms + 200 and r.catch_up_s <= 5
        if not r.kept_up:
            self.say(f"WARNING: the pipeline did not keep up with {rate:,.0f} events/s (the latency rose during the "
                     "load): these latencies are mostly queueing; try a lower --rate")

    def finish(self) -> None:
        self.result.peak_rss_mb = [round(peak_rss_mb(w.pid) or 0.0, 1) for w in self.workers]
        if self.result.peak_rss_mb:
            self.say(f"peak RSS of the worker(s): {', '.join(f'{m:.0f} MB' for m in self.result.peak_rss_mb)}")

    def close(self, failed: bool) -> None:
        self.stop_workers()
        self.offsets.close()
        if self.opts.keep:
            self.say(f"kept the topics {self.tag}* and {self.dir}")
            return
        names = [t for t in self.admin.list_topics(timeout=10).topics if t.startswith(self.tag)]
        if names:
            for future in self.admin.delete_topics(names, operation_timeout=30).values():
                try:
                    future.result()
                except Exception:  # noqa: BLE001 - best effort
                    pass
        try:
            self.admin.delete_consumer_groups([self.tag])[self.tag].result()
        except Exception:  # noqa: BLE001 - best effort
            pass
        if failed:
            self.say(f"worker logs kept in {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


def one_run(settings: Settings, opts: Options, customers: list[str], workers: int, index: int,
            rate: float | None) -> RunResult:
    run = Run(settings, opts, customers, workers, index)
    failed = True
    try:
        run.fund()
        run.backlog()
        run.ceiling()
        run.drain()
        run.steady(rate or opts.rate or run.result.pipeline_events_per_s / 2)
        run.finish()
        failed = False
        return run.result
    finally:
        run.close(failed)


# --- summary ---------------------------------------------------------------------------------

def spread(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def fmt(values: list[float], unit: str, digits: int = 0) -> str:
    median, low, high = spread(values)
    text = f"{median:,.{digits}f} {unit}"
    return text + (f" ({low:,.{digits}f}-{high:,.{digits}f})" if len(values) > 1 else "")


def summarise(opts: Options, by_workers: dict[int, list[RunResult]]) -> dict:
    every = [r for results in by_workers.values() for r in results]
    ceilings = [r.ceiling for r in every]
    size = statistics.median(r.avg_event_bytes for r in every)
    rows = [
        ("`kafka_ceiling_events_per_s`: raw produce + consume of event-sized records (slower of the two)",
         fmt(ceilings, "records/s"), f"{opts.events:,} x {size:.0f} B, {opts.partitions} partitions"),
    ]
    saved = {"kafka_ceiling_events_per_s": round(statistics.median(ceilings))}
    for workers, results in sorted(by_workers.items()):
        suffix = "" if workers == 1 else f"_{workers}w"
        label = f"{workers} worker{'s' if workers > 1 else ''}"
        rates = [r.pipeline_events_per_s for r in results]
        p50s, p99s = [r.p50_ms for r in results], [r.p99_ms for r in results]
        rss = [max(r.peak_rss_mb) for r in results]
        steady = [r.steady_rate for r in results]
        rows += [
            (f"`pipeline_events_per_s{suffix}`: backlog drained, {label}", fmt(rates, "events/s"),
             f"{results[0].backlog_distinct:,} distinct events ({opts.events:,} with retries); workers "
             f"{statistics.median(r.worker_cores_busy for r in results):.2f} cores busy, broker "
             f"{statistics.median(r.broker_cores_busy for r in results):.2f}"),
            (f"`ingest_to_ledger_p50_ms{suffix}`, steady load, {label}", fmt(p50s, "ms"),
             f"at {statistics.median(steady):,.0f} events/s for {opts.duration:.0f}s"
             + ("" if all(r.kept_up for r in results) else "; DID NOT KEEP UP in some runs: queueing")),
            (f"`ingest_to_ledger_p99_ms{suffix}`", fmt(p99s, "ms"), "same"),
            (f"`pipeline_worker_peak_rss_mb{suffix}`: largest worker's VmHWM", fmt(rss, "MB"),
             "after the backlog and the steady load"),
            (f"`worker_cpu_us_per_event{suffix}`: worker CPU over the drain / events",
             fmt([r.worker_cpu_us_per_event for r in results], "µs"), "all worker processes together"),
        ]
        saved.update({
            f"pipeline_events_per_s{suffix}": round(statistics.median(rates)),
            f"ingest_to_ledger_p50_ms{suffix}": round(statistics.median(p50s), 1),
            f"ingest_to_ledger_p99_ms{suffix}": round(statistics.median(p99s), 1),
            f"pipeline_worker_peak_rss_mb{suffix}": round(statistics.median(rss), 1),
            f"worker_cpu_us_per_event{suffix}": round(statistics.median(r.worker_cpu_us_per_event for r in results)),
            f"pipeline_detail{suffix}": {
                "workers": workers, "partitions": opts.partitions, "runs": len(results),
                "backlog_events": opts.events, "distinct_events": [r.backlog_distinct for r in results],
                "avg_event_bytes": size, "tenants": opts.tenants, "users_per_tenant": opts.users,
                "funded_users_per_tenant": opts.funded_users,
                "pipeline_events_per_s": [round(v) for v in rates],
                "startup_s": [round(r.startup_s, 1) for r in results],
                "usage_agent_first_to_last_debit_s": [round(r.usage_agent_s, 1) for r in results],
                "wallet_agent_first_to_last_entry_s": [round(r.wallet_agent_s, 1) for r in results],
                "first_entry_after_first_debit_s": [round(r.first_entry_after_s, 1) for r in results],
                "worker_cores_busy": [round(r.worker_cores_busy, 2) for r in results],
                "broker_cores_busy": [round(r.broker_cores_busy, 2) for r in results],
                "steady_events_per_s": [round(v) for v in steady], "steady_duration_s": opts.duration,
                "ingest_to_ledger_p50_ms": p50s, "ingest_to_ledger_p99_ms": p99s,
                "ingest_to_ledger_max_ms": [r.max_ms for r in results],
                "ingest_to_ledger_p50_first_fifth_ms": [r.p50_first_fifth_ms for r in results],
                "ingest_to_ledger_p50_last_fifth_ms": [r.p50_last_fifth_ms for r in results],
                "steady_catch_up_s": [r.catch_up_s for r in results],
                "steady_kept_up": [r.kept_up for r in results],
                "worker_peak_rss_mb": [r.peak_rss_mb for r in results],
                "kafka_ceiling_produce_records_per_s": [round(r.ceiling_produce) for r in results],
                "kafka_ceiling_consume_records_per_s": [round(r.ceiling_consume) for r in results],
                "dlq_records": [r.dlq for r in results],
                "repeated_ledger_entries": [r.repeated_entries for r in results],
            },
        })
    print()
    print("| figure | median (min-max) | conditions |")
    print("| --- | --- | --- |")
    for name, value, conditions in rows:
        print(f"| {name} | {value} | {conditions} |")
    print()
    return saved


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100,000 events, 1 run, 15 s of steady load")
    parser.add_argument("--events", type=int, help="backlog size (default 1,000,000; --quick 100,000)")
    parser.add_argument("--runs", type=int, help="runs per worker count (default 3; --quick 1)")
    parser.add_argument("--workers", default="1", help="worker processes, or a list (\"1,2,4\" or \"1 2 4\"): runs for each")
    parser.add_argument("--partitions", type=int, help="partitions of the run's topics (default KAFKA_PARTITIONS)")
    parser.add_argument("--tenants", type=int, default=3)
    parser.add_argument("--users", type=int, default=1000, help="users per tenant")
    parser.add_argument("--funded-users", type=int, default=200,
                        help="users per tenant with a funded wallet (plus every team); 0: all to the customer wallet")
    parser.add_argument("--duplicates", type=float, default=0.05, help="share of client retries in the load")
    parser.add_argument("--late", type=float, default=0.01, help="share of events hours to days old")
    parser.add_argument("--rate", type=float, help="steady load, events/s (default: half the first backlog rate)")
    parser.add_argument("--duration", type=float, help="steady load seconds (default 60; --quick 15)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--keep", action="store_true", help="keep each run's topics and worker directory")
    parser.add_argument("--no-save", action="store_true", help="do not write bench-results.json")
    args = parser.parse_args(argv)
    _check_prefixes()
    settings = get_settings()
    opts = Options(
        events=args.events or (100_000 if args.quick else 1_000_000),
        runs=args.runs or (1 if args.quick else 3),
        workers=[int(w) for w in args.workers.replace(",", " ").split()],
        partitions=args.partitions or settings.kafka_partitions,
        tenants=args.tenants, users=args.users, funded_users=min(args.funded_users, args.users),
        duplicates=args.duplicates, late=args.late, rate=args.rate,
        duration=args.duration or (15.0 if args.quick else 60.0),
        seed=args.seed, keep=args.keep, save=not args.no_save,
    )
    if max(opts.workers) > opts.partitions:
        parser.error(f"{max(opts.workers)} workers for {opts.partitions} partitions: some would idle")
    customers = create_tenants(settings, opts.tenants)
    print(f"tenants {', '.join(customers)} with burn tables; {opts.events:,} events per backlog, {opts.runs} run(s) "
          f"per worker count {opts.workers}, {opts.partitions} partitions", flush=True)
    by_workers: dict[int, list[RunResult]] = {}
    for workers in opts.workers:
        results = by_workers.setdefault(workers, [])
        for index in range(opts.runs):
            rate = opts.rate or (results[0].pipeline_events_per_s / 2 if results else None)
            results.append(one_run(settings, opts, customers, workers, index, rate))
    saved = summarise(opts, by_workers)
    if opts.save:
        merge_results(saved)
        print(f"saved to {RESULTS}")


if __name__ == "__main__":
    main()
