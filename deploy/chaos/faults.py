"""The faults `make chaos` injects into its own local stack, each with how it is undone.

They act on the real processes through the stack's PID files: a worker or the API is killed -9
(the supervisor starts it again, as it would in production); Kafka and Postgres are stopped and
started; ClickHouse is stopped while the supervisor is frozen (SIGSTOP), so that it stays down
for the whole hold instead of being restarted after a second.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from deploy.local_stack.processes import ManagedProcess, free_port, terminate, wait_until
from deploy.local_stack.stack import Stack

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Fault:
    name: str
    hold_s: float  # how long the fault lasts before it is undone
    inject: Callable[["Faults"], None]
    restore: Callable[["Faults"], None]
    notes: str


class Faults:
    """The stack under test, and the handles the faults need."""

    def __init__(self, stack: Stack):
        self.stack, self.settings = stack, stack.settings
        self.extra_worker: subprocess.Popen | None = None

    def process(self, name: str) -> ManagedProcess:
        return ManagedProcess(name, self.stack.run_dir, self.stack.log_dir)

    def pid(self, name: str) -> int:
        pid = self.process(name).pid()
        if pid is None:
            raise RuntimeError(f"{name} is not running")
        return pid

    def kill9(self, name: str) -> None:
        os.killpg(self.pid(name), signal.SIGKILL)

    def wait_ready(self, name: str, timeout_s: float = 120.0) -> None:
        probe = self.stack._readiness_probes()[name]

        def ready() -> bool:
            try:
                return bool(self.process(name).pid()) and probe()
            except httpx.HTTPError:
                return False

        if not wait_until(ready, timeout_s, interval_s=0.2):
            raise RuntimeError(f"{name} was not ready again within {timeout_s:.0f} s")

    # --- the faults ------------------------------------------------------------------------
    def kill_worker(self) -> None:
        self.kill9("worker")

    def start_extra_worker(self) -> None:
        env = {**os.environ, "WORKER_WEB_PORT": str(free_port())}
        log = open(self.stack.log_dir / "worker-extra.log", "ab")  # noqa: SIM115 - the process keeps it
        self.extra_worker = subprocess.Popen([sys.executable, "-m", "openmonetize", "run", "worker"], env=env,
                                             stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)

    def stop_extra_worker(self) -> None:
        if self.extra_worker is not None:
            terminate(self.extra_worker.pid, timeout_s=30)
            self.extra_worker.wait(timeout=10)
            self.extra_worker = None

    def stop_clickhouse(self) -> None:
        os.kill(self.pid("supervisor"), signal.SIGSTOP)
        self.process("clickhouse").stop()

    def start_clickhouse(self) -> None:
        os.kill(self.pid("supervisor"), signal.SIGCONT)
        self.wait_ready("clickhouse")


FAULTS = [
    Fault("worker_kill", 0, Faults.kill_worker, lambda f: f.wait_ready("worker"),
          "kill -9 the stream worker; the supervisor starts it again"),
    Fault("rebalance", 15, Faults.start_extra_worker, Faults.stop_extra_worker,
          "a second worker joins the group for 15 s, then leaves (two rebalances)"),
    Fault("broker_restart", 15, lambda f: f.stack.kafka.stop(), lambda f: f.stack.kafka.start(),
          "the Kafka broker stopped for 15 s, then started"),
    Fault("postgres_down", 20, lambda f: f.stack.postgres.stop(), lambda f: f.stack.postgres.start(),
          "Postgres stopped for 20 s (ledger sink, API keys, schema registry)"),
    Fault("clickhouse_down", 20, Faults.stop_clickhouse, Faults.start_clickhouse,
          "ClickHouse stopped for 20 s"),
    Fault("api_restart", 0, lambda f: f.kill9("api"), lambda f: f.wait_ready("api"),
          "kill -9 the API (all its workers) while clients retry with the same event ids"),
]

# Not among make chaos's scenarios (its default run stays as it was); the soak draws from them too.
SINK_KILLS = [
    Fault("sink_ledger_kill", 0, lambda f: f.kill9("sink-ledger"), lambda f: f.wait_ready("sink-ledger"),
          "kill -9 the Postgres ledger sink; the supervisor starts it again"),
    Fault("sink_clickhouse_kill", 0, lambda f: f.kill9("sink-clickhouse"), lambda f: f.wait_ready("sink-clickhouse"),
          "kill -9 the ClickHouse sink; the supervisor starts it again"),
]
