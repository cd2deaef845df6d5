"""Keeps the stack's Python processes running: starts each, restarts it when it dies.

`openmonetize run supervisor` runs this in the foreground; `stack up` starts it in the
background with its own PID file. Each child (`openmonetize run <service>`) has its own PID
file and log file, so `stack status` and `stack logs` see them directly. On SIGTERM the
children are stopped in reverse start order.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from deploy.local_stack.processes import ManagedProcess, kill_group, terminate
from openmonetize.logs import get_logger
from openmonetize.settings import Settings

log = get_logger(__name__)

SUPERVISED = ("clickhouse", "api", "worker", "sink-ledger", "sink-clickhouse", "proxy")  # start order
MAX_BACKOFF_S = 30.0
HEALTHY_AFTER_S = 60.0  # a child that ran this long restarts at once when it exits, then 1 s, 2 s, ...
WORKER_PORT_STEP = 100  # worker N's web port: WORKER_WEB_PORT + 100 x (N - 1), clear of the stack's other ports


def workers(settings: Settings) -> dict[str, int]:
    """The stack's stream workers by process name, with their web ports: `worker`, `worker-2`, ...
    WORKER_PROCESSES of them (0: one per CPU core: the partitions share nothing, so each core
    can run one; see docs/operations/performance.md)."""
    count = settings.worker_processes or os.cpu_count() or 1
    return {("worker" if i == 0 else f"worker-{i + 1}"): settings.worker_web_port + WORKER_PORT_STEP * i
            for i in range(count)}


def service_of(process_name: str) -> str:
    """`worker-2` runs the `worker` service; every other process its own name."""
    return "worker" if process_name.startswith("worker-") else process_name


@dataclass
class Child:
    process: ManagedProcess
    popen: subprocess.Popen | None = None
    started_at: float = 0.0
    restarts: int = 0
    backoff_s: float = 0.0
    next_start: float = 0.0
    env: dict[str, str] = field(default_factory=dict)  # beyond the supervisor's own environment

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "openmonetize", "run", service_of(self.process.name)]


class Supervisor:
    def __init__(self, settings: Settings, names: list[str], env: dict[str, dict[str, str]] | None = None):
        run_dir, log_dir = settings.stack_dir / "run", settings.stack_dir / "logs"
        self.children = [Child(ManagedProcess(name, run_dir, log_dir), env=(env or {}).get(name, {})) for name in names]
        self.stopping = False

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._request_stop)
        signal.signal(signal.SIGINT, self._request_stop)
        log.info("supervisor_started", services=[c.process.name for c in self.children])
        while not self.stopping:
            now = time.monotonic()
            for child in self.children:
                self._check(child, now)
            time.sleep(0.2)
        self._stop_all()

    def _check(self, child: Child, now: float) -> None:
        if child.popen is not None:
            code = child.popen.poll()
            if code is None:
                if now - child.started_at > HEALTHY_AFTER_S:
                    child.backoff_s = 0.0
                return
            log.warning(
                "child_exited", service=child.process.name, code=code, restart_in_s=child.backoff_s
            )
            # Its own children (e.g. uvicorn's worker processes) outlive a killed parent and would
            # keep its port: end its whole process group before starting it again.
            kill_group(child.popen.pid)
            child.popen = None
            child.process.pid_file.unlink(missing_ok=True)
            child.next_start = now + child.backoff_s
            child.backoff_s = min(max(child.backoff_s * 2, 1.0), MAX_BACKOFF_S)
            child.restarts += 1
        if now >= child.next_start:
            child.popen = child.process.start(child.argv(), env={**os.environ, **child.env} if child.env else None)
            child.started_at = now
            log.info("child_started", service=child.process.name, pid=child.popen.pid, restarts=child.restarts)

    def _request_stop(self, signum, _frame) -> None:
        log.info("supervisor_stopping", signal=signal.Signals(signum).name)
        self.stopping = True

    def _stop_all(self) -> None:
        for child in reversed(self.children):
            if child.popen is not None and child.popen.poll() is None:
                terminate(child.popen.pid, timeout_s=20.0)
                child.popen.wait(timeout=5)
            child.process.pid_file.unlink(missing_ok=True)
        log.info("supervisor_stopped")
