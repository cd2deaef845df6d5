"""Background processes of the local stack: PID files, ports, start, stop, wait.

Everything here is found by PID file, never by process name, so two stacks (a developer's
`make up` and the tests' stack) can run side by side on different ports and data dirs.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


class StackError(RuntimeError):
    """A problem the operator has to fix; the message says what and how."""


@dataclass(frozen=True)
class ManagedProcess:
    """A process of the stack, known by its PID file and writing to its own log file."""

    name: str
    run_dir: Path
    log_dir: Path

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    def _recorded_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def pid(self) -> int | None:
        """The PID of the running process, or None."""
        pid = self._recorded_pid()
        return pid if pid is not None and pid_alive(pid) else None

    def stale_pid(self) -> int | None:
        """The PID a leftover PID file names when that process is gone (e.g. after a reboot or kill -9)."""
        pid = self._recorded_pid()
        return pid if pid is not None and not pid_alive(pid) else None

    def remove_stale(self) -> int | None:
        """Delete a stale PID file; returns the PID it named, or None if there was none."""
        pid = self.stale_pid()
        if pid is not None:
            self.pid_file.unlink(missing_ok=True)
        return pid

    def start(
        self, argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> subprocess.Popen:
        """Start argv detached (own session), output appended to the log file; write the PID file."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        self.pid_file.write_text(f"{proc.pid}\n")
        return proc

    def stop(self, timeout_s: float = 20.0) -> bool:
        """SIGTERM, wait, then SIGKILL. Returns True if a process was stopped."""
        pid = self.pid()
        if pid is None:
            self.remove_stale()
            return False
        terminate(pid, timeout_s)
        self.pid_file.unlink(missing_ok=True)
        return True


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def terminate(pid: int, timeout_s: float = 20.0) -> None:
    """Stop a process and its session's children: SIGTERM, then SIGKILL after the timeout."""
    _signal_group(pid, signal.SIGTERM)
    if not wait_until(lambda: not pid_alive(pid), timeout_s, interval_s=0.1):
        _signal_group(pid, signal.SIGKILL)
        wait_until(lambda: not pid_alive(pid), 5.0, interval_s=0.1)


def kill_group(pgid: int) -> None:
    """SIGKILL what is left of a process group whose leader has exited."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # started with start_new_session: its PID is its group id
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def free_port() -> int:
    """A TCP port free on loopback now (the caller binds it soon after)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(host: str, port: int) -> bool:
    """True if something accepts TCP connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def require_free_port(host: str, port: int, setting: str, service: str) -> None:
    if port_open(host, port):
        raise StackError(
            f"{service}: port {port} on {host} is already in use by a process this stack did not "
            f"start. Stop that process or choose another port with {setting}=<port>."
        )


def wait_until(condition: Callable[[], bool], timeout_s: float, interval_s: float = 0.2) -> bool:
    """Poll condition until it is true or the deadline passes.

    Exceptions count as false (a service that is starting raises all sorts), except StackError,
    which a condition raises to give up early (e.g. the process died).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if condition():
                return True
        except StackError:
            raise
        except Exception:  # noqa: BLE001 - a service that is still starting raises all sorts
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)


def tail(path: Path, lines: int = 20, width: int = 400) -> str:
    """The last lines of a log, each cut to `width` characters (tracebacks in JSON are long)."""
    try:
        last = path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(line if len(line) <= width else line[:width] + " …" for line in last)
    except FileNotFoundError:
        return "(no log yet)"
