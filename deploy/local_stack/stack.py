"""The local stack as one unit: `up`, `down`, `status`, `env`, `logs`.

Order of `up`: Kafka (topics created) → Postgres (database, migrations) → the billing catalog
(provider prices imported when none are, everything republished to its topic) → the supervisor,
which starts the ClickHouse front (then its migrations run), the API, the stream worker and the two sinks.
Each step is idempotent, so `up` on a running stack only checks it. `down` stops what the PID
files name, in reverse order.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Callable

import httpx
from confluent_kafka import KafkaException

from deploy.local_stack.kafka import KafkaService
from deploy.local_stack.postgres import PostgresService
from deploy.local_stack import stack_secrets
from deploy.local_stack.processes import ManagedProcess, StackError, tail, wait_until
from deploy.local_stack.supervisor import SUPERVISED, service_of, workers
from openmonetize import catalog_admin, clickhouse_client, consumer_lag, migrations
from openmonetize.logs import get_logger
from openmonetize.settings import Settings

log = get_logger(__name__)


@dataclass(frozen=True)
class StepResult:
    service: str
    state: str
    seconds: float


class Stack:
    def __init__(self, settings: Settings, say: Callable[[str], None] = lambda line: print(line, file=sys.stderr)):
        self.settings = settings
        self.say = say
        self.run_dir = settings.stack_dir / "run"
        self.log_dir = settings.stack_dir / "logs"
        self.kafka = KafkaService(settings, self._process("kafka"))
        self.postgres = PostgresService(settings, self._process("postgres"))
        self.supervisor = self._process("supervisor")

    def _process(self, name: str) -> ManagedProcess:
        return ManagedProcess(name, self.run_dir, self.log_dir)

    @property
    def supervised(self) -> list[str]:
        """The processes the supervisor runs, in start order: of the services this stack runs."""
        return [name for name in self._supervisable if service_of(name) in self.settings.services]

    @property
    def _supervisable(self) -> list[str]:
        """Every process a supervisor may run, in start order: one per service, but `worker`
        runs WORKER_PROCESSES of them (workers())."""
        return [child for service in SUPERVISED
                for child in (list(workers(self.settings)) if service == "worker" else [service])]

    def child_env(self) -> dict[str, dict[str, str]]:
        """What each supervised process runs with beyond the stack's settings: its web port."""
        return {name: {"WORKER_WEB_PORT": str(port)} for name, port in workers(self.settings).items()}

    # --- up ------------------------------------------------------------------------------
    def _all_processes(self) -> list[ManagedProcess]:
        return [self.kafka.process, self.postgres.process, self.supervisor, *map(self._process, self._supervisable)]

    def up(self) -> list[StepResult]:
        self.settings.stack_dir.mkdir(parents=True, exist_ok=True)
        for name in stack_secrets.ensure(self.settings):
            self.say(f"✓ secret {name}: in {self.settings.stack_dir / 'secrets'}")
        for process in self._all_processes():
            if (pid := process.remove_stale()) is not None:
                self.say(f"! removed stale PID file {process.pid_file} (process {pid} is not running)")
        results = []
        if "kafka" in self.settings.services:
            results.append(self._step("kafka", self.kafka.start))
        if "postgres" in self.settings.services:
            results.append(self._step("postgres", self.postgres.start))
        results.append(self._step("migrate postgres", self.migrate_postgres))
        results.append(self._step("import prices", self.import_prices))
        results.append(self._step("catalog sync", self.sync_catalog))
        if self.supervised:
            results.append(self._step("supervisor", self._start_supervisor))
            for name in self.supervised:
                results.append(self._step(name, lambda name=name: self._wait_supervised(name)))
                if name == "clickhouse":  # before the sink writes to it
                    results.append(self._step("migrate clickhouse", self.migrate_clickhouse))
        if "clickhouse" not in self.supervised:
            results.append(self._step("migrate clickhouse", self.migrate_clickhouse))
        return results

    def _step(self, name: str, action: Callable[[], str]) -> StepResult:
        self.say(f"… {name}")
        start = time.monotonic()
        state = action()
        result = StepResult(name, state, time.monotonic() - start)
        self.say(f"✓ {name}: {state} ({result.seconds:.1f}s)")
        log.info("stack_step", service=name, state=state, seconds=round(result.seconds, 2))
        return result

    def migrate_postgres(self) -> str:
        applied = migrations.apply_postgres(self.settings.database_url)
        return f"applied {', '.join(applied)}" if applied else "up to date"

    def import_prices(self) -> str:
        done = catalog_admin.import_prices(self.settings, only_if_missing=True)
        return "a snapshot is stored" if done is None else f"imported {done.version} ({done.inserted} prices)"

    def sync_catalog(self) -> str:
        return f"published {catalog_admin.sync(self.settings)} records"

    def migrate_clickhouse(self) -> str:
        client = clickhouse_client.get_client(self.settings, "writer")
        try:
            applied = migrations.apply_clickhouse(client, self.settings.clickhouse_database)
        finally:
            client.close()
        return f"applied {', '.join(applied)}" if applied else "up to date"

    def _start_supervisor(self) -> str:
        if self.supervisor.pid():
            return "already running"
        for name in self.supervised:
            # A child left behind by a supervisor that was killed would hold the port.
            self._process(name).stop()
        self.supervisor.start([sys.executable, "-m", "openmonetize", "run", "supervisor"])
        return "started"

    def _wait_supervised(self, name: str) -> str:
        probe = self._readiness_probes()[name]
        child = self._process(name)

        def ready() -> bool:
            if not self.supervisor.pid():
                raise StackError(f"the supervisor exited; see {self.supervisor.log_file}")
            return probe()

        if not wait_until(ready, self.settings.stack_start_timeout_s, interval_s=0.25):
            raise StackError(
                f"{name} did not become ready within {self.settings.stack_start_timeout_s:.0f}s; "
                f"last lines of {child.log_file}:\n{tail(child.log_file)}"
            )
        return "ready"

    def _readiness_probes(self) -> dict[str, Callable[[], bool]]:
        s = self.settings

        def http_ok(url: str) -> Callable[[], bool]:
            return lambda: httpx.get(url, timeout=2.0).status_code == 200

        return {
            "clickhouse": http_ok(f"{s.clickhouse_url}/ping"),
            "api": http_ok(f"{s.api_url}/ready"),
            **{name: http_ok(f"http://127.0.0.1:{port}/metrics") for name, port in workers(s).items()},
            "sink-ledger": http_ok(f"http://127.0.0.1:{s.ledger_sink_metrics_port}/metrics"),
            "sink-clickhouse": http_ok(f"http://127.0.0.1:{s.clickhouse_sink_metrics_port}/metrics"),
            "proxy": http_ok(f"http://{s.proxy_host}:{s.proxy_port}/ready"),
        }

    # --- down ----------------------------------------------------------------------------
    def down(self) -> list[StepResult]:
        results = [self._step("supervisor", lambda: _stopped(self.supervisor.stop()))]
        for name in reversed(self._supervisable):
            # Normally gone with the supervisor; this catches orphans of a killed supervisor.
            results.append(self._step(name, lambda name=name: _stopped(self._process(name).stop())))
        results.append(self._step("postgres", lambda: _stopped(self.postgres.stop())))
        results.append(self._step("kafka", lambda: _stopped(self.kafka.stop())))
        return results

    # --- status, env, logs ---------------------------------------------------------------
    def status(self) -> dict[str, str]:
        probes = self._readiness_probes()
        states = {"kafka": self.kafka.status(), "postgres": self.postgres.status()}
        states["supervisor"] = "running" if self.supervisor.pid() else "stopped"
        for name in self._supervisable:
            if not self._process(name).pid():
                states[name] = "stopped"
                continue
            try:
                states[name] = "running" if probes[name]() else "running, not ready"
            except Exception as exc:  # noqa: BLE001
                states[name] = f"running, not answering ({type(exc).__name__})"
        for process in self._all_processes():
            if (pid := process.stale_pid()) is not None:
                states[process.name] += f" (stale PID file: process {pid} is gone)"
        for name in list(states):
            if service_of(name) in self.settings.services or name == "supervisor":
                continue
            states[name] += " (external: not managed by this stack)"
        return states

    def consumer_lag(self) -> list[consumer_lag.TopicLag]:
        """How far behind the worker's and the sinks' consumer groups are (see openmonetize/consumer_lag.py)."""
        try:
            return consumer_lag.read(self.settings, timeout_s=3.0)
        except KafkaException as exc:
            raise StackError(f"not read: Kafka at {self.settings.kafka_bootstrap} did not answer ({exc})") from exc

    def env(self) -> dict[str, str]:
        s = self.settings
        return {
            "KAFKA_BOOTSTRAP": s.kafka_bootstrap,
            "DATABASE_URL": s.database_url,
            "CLICKHOUSE_URL": s.clickhouse_url,
            "CLICKHOUSE_DATABASE": s.clickhouse_database,
            **self._clickhouse_credentials(),
            "API_URL": s.api_url,
            "STACK_DIR": str(s.stack_dir),
        }

    def _clickhouse_credentials(self) -> dict[str, str]:
        """The two ClickHouse users (openmonetize/clickhouse_client.py), generated ones included."""
        writer = clickhouse_client.credentials(self.settings, "writer")
        reader = clickhouse_client.credentials(self.settings, "reader")
        return {"CLICKHOUSE_USER": writer.user, "CLICKHOUSE_PASSWORD": writer.password,
                "CLICKHOUSE_READER_USER": reader.user, "CLICKHOUSE_READER_PASSWORD": reader.password}

    def log_file(self, service: str) -> str:
        known = ["kafka", "postgres", "supervisor", *SUPERVISED]
        if service not in known:
            raise StackError(f"unknown service {service!r}; known: {', '.join(known)}")
        return str(self._process(service).log_file)


def _stopped(was_running: bool) -> str:
    return "stopped" if was_running else "not running"
