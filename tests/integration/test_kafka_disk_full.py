"""A Kafka broker whose log directory fills up: the API answers 503 with Retry-After (within the
producer timeout, never a client timeout, never a 500), nothing it acknowledged is lost, and once
the space is freed and the broker restarted, ingest (and the clients' retries) go on.

A broker of the test's own (KafkaService, own STACK_DIR, free ports, the stack's jar cache)
runs with its log dir, `<STACK_DIR>/kafka/data`, on a 64 MiB tmpfs (KRaft metadata log and
partitions alike); an API process of the test's own produces to it with
KAFKA_PRODUCER_TIMEOUT_MS=3000. The test fills the tmpfs with a file until ENOSPC.

What the broker does (Kafka 4.1.1; its log, `<STACK_DIR>/logs/kafka.log`):
- the first write that needs a new page fails with "No space left on device": usually the append
  of an ingest request ("Error while appending records to usage.events-1"); requests just before
  it may still be stored and acknowledged, in the room left on the segment's last page (a dozen
  small requests in our runs). Had the API just started, the write can be the broker's own (the
  API's consumers make it create __consumer_offsets: "Error while writing partition metadata
  file"): the test waits for those partitions to be written first;
- the log dir is marked offline ("Stopping serving replicas in dir ... because the log directory
  has failed") and, its only log dir gone, the broker stops at once: "Shutdown broker because
  all log dirs in ... have failed" (it halts: no controlled shutdown, nothing deregistered);
- the API's producer cannot reach it, each record times out after message.timeout.ms and every
  ingest answers 503 `kafka_unavailable` with `Retry-After` in 3.0 s, never a 500 or a hang;
- once the file is deleted, `KafkaService.start()` starts it on the same data without wiping
  anything: "Recovering ... logs since no clean shutdown file was found", the half-written batch
  cut off ("Corruption found in segment 0, truncating to offset N", N the first offset never
  acknowledged), then "registerBroker ... DuplicateBrokerRegistrationException" until the
  halted incarnation's session times out (broker.session.timeout.ms, 9 s): 15-25 s to serve again;
- the broker refuses the API's idempotent producer's first batch once with
  OutOfOrderSequenceException (the producer's sequence numbers went on past the cut batch);
  librdkafka recovers from that by itself (new epoch, resent) and that request is a 202 within
  a second: the API needs no restart.
Every event acknowledged before, and the refused ones sent again, are on usage.events.
"""

from __future__ import annotations

import errno
import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from confluent_kafka.admin import AdminClient

from deploy.local_stack.kafka import KafkaService
from deploy.local_stack.processes import ManagedProcess, free_port
from openmonetize.settings import Settings
from schemas.codec import AvroCodec, schema_text
from schemas.topics import topics
from tests.conftest import eventually
from tests.integration.api_process import api_process
from tests.integration.support import RegistryOverHttp, new_tenant, read_topic, token_event

DISK_MB = 64
PRODUCER_TIMEOUT_MS = 3000
MARGIN_S = 4.0  # an answer later than the producer timeout plus this is a hang, not a 503


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True)


@pytest.fixture
def small_disk(tmp_path):
    """<stack>/kafka/data on a DISK_MB tmpfs; unmounted whatever happens."""
    stack_dir = tmp_path / "stack"
    data = stack_dir / "kafka" / "data"
    data.mkdir(parents=True)
    mounted = _run("mount", "-t", "tmpfs", "-o", f"size={DISK_MB}M", "tmpfs", str(data))
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs for the broker's log dir: {(mounted.stderr or mounted.stdout).strip()}")
    try:
        yield stack_dir, data
    finally:
        if _run("umount", str(data)).returncode != 0:
            _run("umount", "-l", str(data))  # still busy (a process we missed): detach it anyway


@pytest.fixture
def broker(settings, small_disk):
    stack_dir, _ = small_disk
    own = Settings(stack_dir=stack_dir, cache_dir=settings.cache_dir, kafka_port=free_port(),
                   kafka_controller_port=free_port(), kafka_bootstrap="", kafka_partitions=2, kafka_heap="512m")
    service = KafkaService(own, ManagedProcess("kafka", own.stack_dir / "run", own.stack_dir / "logs"))
    try:
        service.start()
        yield service
    finally:
        service.stop()


@pytest.fixture
def own_api(broker, tmp_path):
    env = {"KAFKA_BOOTSTRAP": broker.settings.kafka_bootstrap, "KAFKA_PARTITIONS": str(broker.settings.kafka_partitions),
           "KAFKA_PRODUCER_TIMEOUT_MS": str(PRODUCER_TIMEOUT_MS), "API_RATE_LIMIT_PER_S": "0",
           # never grant the shared Postgres's subscriptions onto this broker
           "PLANS_SCHEDULER_INTERVAL_S": "0"}
    with api_process(tmp_path / "api.log", **env) as url:
        yield url


def fill(directory: Path) -> Path:
    """Write a file into `directory` until the file system says ENOSPC."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 20, 4096, 1):
            chunk = b"\0" * size
            while True:
                try:
                    os.write(fd, chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    return filler


class Client:
    """Sends events, remembering which ids the API acknowledged and which it refused."""

    def __init__(self, url: str, api_key: str):
        self.http = httpx.Client(base_url=url, headers={"X-OM-Api-Key": api_key}, timeout=60)
        self.acknowledged: set[str] = set()
        self.refused: dict[str, dict] = {}  # event_id -> the event, to send again
        self.answers: list[tuple[int, float]] = []  # (status, seconds) of each request

    def send(self, events: list[dict]) -> httpx.Response:
        started = time.monotonic()
        answer = self.http.post("/v1/events/ingest", json={"events": events})
        took = time.monotonic() - started
        self.answers.append((answer.status_code, took))
        assert answer.status_code in (202, 503), (answer.status_code, answer.text[:500])
        assert took < PRODUCER_TIMEOUT_MS / 1000 + MARGIN_S, (answer.status_code, took)
        if answer.status_code == 202:
            assert answer.json() == {"accepted": len(events), "rejected": []}, answer.text
            for event in events:
                self.acknowledged.add(event["event_id"])
                self.refused.pop(event["event_id"], None)
        else:
            assert int(answer.headers["Retry-After"]) >= 1, answer.headers
            error = answer.json()["error"]
            assert error["code"] == "kafka_unavailable", answer.text
            # `accepted` of them were stored before the failure, but which is not said: all are resent
            for event in events:
                if event["event_id"] not in self.acknowledged:
                    self.refused[event["event_id"]] = event
        return answer

    def batch(self, n: int = 3) -> httpx.Response:
        return self.send([token_event(user_id="disk-user") for _ in range(n)])


def stored_event_ids(bootstrap: str, topic: str, api_url: str, subject: str, schema_file: str) -> list[str]:
    latest = httpx.get(f"{api_url}/subjects/{subject}/versions/latest", timeout=5).json()["id"]
    codec = AvroCodec(schema_text(schema_file), latest, RegistryOverHttp(api_url))
    return [codec.decode(message.value())["event_id"] for message in read_topic(bootstrap, topic)]


def settled(broker: KafkaService, data: Path) -> bool:
    """Every partition the broker leads has its files written (the API's consumers' group.id makes
    the broker create __consumer_offsets, 50 partitions, soon after the API starts): the disk then
    fills under a broker in its steady state, not half-way through creating partitions."""
    names = AdminClient({"bootstrap.servers": broker.settings.kafka_bootstrap}).list_topics(timeout=5).topics
    if "__consumer_offsets" not in names:
        return False
    return all((data / f"{name}-{p}" / "partition.metadata").exists() for name, t in names.items() for p in t.partitions)


def test_a_full_kafka_disk_is_503_with_retry_after_and_loses_nothing_acknowledged(settings, small_disk, broker, own_api):
    _, data = small_disk
    spec = topics(broker.settings).usage_events
    client = Client(own_api, new_tenant(settings).api_key)

    for _ in range(3):
        assert client.batch().status_code == 202
    before = set(client.acknowledged)
    eventually(lambda: settled(broker, data), timeout_s=30, interval_s=0.2, what="the broker's partitions written")

    filler = fill(data)
    filled_at = time.monotonic()
    try:
        # A request just after the disk filled may still be stored (the last page of a segment
        # has room); from the first 503 on, every answer is a 503 until the broker is back.
        eventually(lambda: client.batch().status_code == 503, timeout_s=40, interval_s=0,
                   what="a 503 once the broker's disk is full")
        first_503_after = time.monotonic() - filled_at
        for _ in range(2):
            assert client.batch().status_code == 503
        gone = eventually(lambda: broker.process.pid() is None, timeout_s=30, interval_s=0.2,
                          what="the broker to shut down, its only log dir failed")
    finally:
        filler.unlink()
    log = broker.process.log_file.read_text(errors="replace")
    assert "No space left on device" in log and "because all log dirs in" in log, "not the failure expected"

    restart_started = time.monotonic()
    broker.start()
    eventually(lambda: client.batch(1).status_code == 202, timeout_s=60, interval_s=0.5,
               what="ingest answering 202 once the space is freed and the broker restarted")
    back_after = time.monotonic() - restart_started
    for _ in range(3):
        assert client.batch().status_code == 202
    resent = dict(client.refused)
    assert resent
    for event in resent.values():  # the client's retries of what was refused, same ids
        assert client.send([event]).status_code == 202
    assert not client.refused

    # `eventually` retries past a failed assertion: check every answer once more here.
    limit = PRODUCER_TIMEOUT_MS / 1000 + MARGIN_S
    assert all(status in (202, 503) and took < limit for status, took in client.answers), client.answers

    stored = stored_event_ids(broker.settings.kafka_bootstrap, spec.name, own_api, spec.subject, spec.schema_file)
    missing = client.acknowledged - set(stored)
    assert not missing, f"{len(missing)} acknowledged events are not on {spec.name}: {sorted(missing)[:5]}"
    assert before <= set(stored) and set(resent) <= set(stored)
    # Repeats on the topic (an event stored before a 503 and sent again) are allowed: the usage
    # agent dedupes by event_id.
    print(f"\nfirst 503 {first_503_after:.1f}s after the disk filled; answers (status, s): "
          f"{[(status, round(took, 2)) for status, took in client.answers]}; broker gone: {gone}; "
          f"202 again {back_after:.1f}s after the restart began; {len(stored)} records, "
          f"{len(stored) - len(set(stored))} repeats")
