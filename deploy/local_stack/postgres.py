"""The local Postgres server: Debian's PostgreSQL binaries on a project-owned data dir.

`initdb` refuses to run as root, so when we are root the server runs as the `postgres` user
(created by Debian's package) on a data dir that user owns. The server listens on loopback
only, on POSTGRES_PORT, with its socket inside the data area rather than /var/run.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

import psycopg
from psycopg import sql

from deploy.local_stack.processes import ManagedProcess, StackError, pid_alive, require_free_port, tail
from deploy.local_stack.system import apt_install
from openmonetize.logs import get_logger
from openmonetize.settings import Settings

log = get_logger(__name__)
SERVER_USER = "postgres"


def find_bin_dir() -> Path | None:
    """Newest Debian PostgreSQL server bin dir (/usr/lib/postgresql/<major>/bin)."""
    candidates = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "pg_ctl").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    return candidates[-1] if candidates else None


class PostgresService:
    name = "postgres"

    def __init__(self, settings: Settings, process: ManagedProcess):
        self.settings = settings
        self.process = process
        self.home = settings.stack_dir / "postgres"
        self.data = self.home / "data"
        self.socket_dir = self.home / "socket"

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> str:
        bin_dir = self._bin_dir()
        self._prepare_dirs()
        if self._server_pid():
            state = "already running"
        else:
            require_free_port("127.0.0.1", self.settings.postgres_port, "POSTGRES_PORT", self.name)
            if not (self.data / "PG_VERSION").exists():
                self._initdb(bin_dir)
            self._write_config()
            result = self._as_server_user(
                [
                    str(bin_dir / "pg_ctl"),
                    "-D", str(self.data),
                    "-l", str(self.process.log_file),
                    "-w", "-t", str(int(self.settings.stack_start_timeout_s)),
                    "start",
                ]
            )
            if result.returncode != 0:
                raise StackError(
                    f"postgres did not start: {result.stdout}{result.stderr}\n"
                    f"last log lines:\n{tail(self.process.log_file)}"
                )
            state = "started"
        pid = self._server_pid()
        if pid:
            self.process.run_dir.mkdir(parents=True, exist_ok=True)
            self.process.pid_file.write_text(f"{pid}\n")
        self._ensure_database()
        return state

    def stop(self) -> bool:
        if not self._server_pid():
            self.process.pid_file.unlink(missing_ok=True)
            return False
        bin_dir = self._bin_dir()
        result = self._as_server_user([str(bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"])
        if result.returncode != 0:
            # pg_ctl could not stop it cleanly; fall back to the PID we recorded.
            self.process.stop()
        self.process.pid_file.unlink(missing_ok=True)
        return True

    def status(self) -> str:
        if not self._server_pid():
            return "stopped"
        try:
            with psycopg.connect(self.settings.database_url, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as exc:
            return f"running, not answering ({str(exc).strip()})"
        return "running"

    # --- steps ---------------------------------------------------------------------------
    def _bin_dir(self) -> Path:
        bin_dir = find_bin_dir()
        if bin_dir is None:
            apt_install("postgresql")
            bin_dir = find_bin_dir()
        if bin_dir is None:
            raise StackError("PostgreSQL server binaries not found under /usr/lib/postgresql after install.")
        return bin_dir

    def _server_user(self) -> pwd.struct_passwd | None:
        """The unprivileged user the server runs as when we are root; None when we are not root."""
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam(SERVER_USER)
        except KeyError:
            subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", SERVER_USER], check=True)
            return pwd.getpwnam(SERVER_USER)

    def _as_server_user(self, argv: list[str]) -> subprocess.CompletedProcess:
        user = self._server_user()
        if user is not None:
            argv = [shutil.which("runuser") or "/usr/sbin/runuser", "-u", user.pw_name, "--", *argv]
        return subprocess.run(argv, capture_output=True, text=True, cwd="/")

    def _prepare_dirs(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        self.process.log_dir.mkdir(parents=True, exist_ok=True)
        self.process.log_file.touch()
        user = self._server_user()
        if user is not None:
            for path in (self.home, self.socket_dir, self.process.log_file):
                os.chown(path, user.pw_uid, user.pw_gid)
            if self.data.exists():
                os.chown(self.data, user.pw_uid, user.pw_gid)
            probe = subprocess.run(["runuser", "-u", user.pw_name, "--", "test", "-w", str(self.home)])
            if probe.returncode != 0:
                raise StackError(
                    f"the '{user.pw_name}' user cannot reach {self.home}: a parent directory is not "
                    f"traversable by others. Choose another STACK_DIR or `chmod o+x` its parents."
                )

    def _initdb(self, bin_dir: Path) -> None:
        log.info("postgres_initdb", data=str(self.data))
        result = self._as_server_user(
            [
                str(bin_dir / "initdb"),
                "-D", str(self.data),
                "-U", "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E", "UTF8",
                "--no-locale",
            ]
        )
        if result.returncode != 0:
            raise StackError(f"initdb failed:\n{result.stdout}{result.stderr}")

    def _write_config(self) -> None:
        """Port and listen address live in an included file, rewritten at each start."""
        conf = self.data / "postgresql.conf"
        include = "include_if_exists = 'openmonetize.conf'\n"
        if include not in conf.read_text():
            with open(conf, "a") as fh:
                fh.write(include)
        extra = self.data / "openmonetize.conf"
        extra.write_text(
            "\n".join(
                [
                    "listen_addresses = '127.0.0.1'",
                    f"port = {self.settings.postgres_port}",
                    f"unix_socket_directories = '{self.socket_dir}'",
                    "max_connections = 200",
                    f"shared_buffers = {self.settings.postgres_shared_buffers}",
                    "log_line_prefix = '%m [%p] %q%u@%d '",
                    "",
                ]
            )
        )
        user = self._server_user()
        if user is not None:
            os.chown(extra, user.pw_uid, user.pw_gid)

    def _server_pid(self) -> int | None:
        """The postmaster's PID from its own pid file, if that process is alive."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().splitlines()[0])
        except (FileNotFoundError, ValueError, IndexError, PermissionError):
            return None
        return pid if pid_alive(pid) else None

    def _ensure_database(self) -> None:
        """Create the application role and database (idempotent), as the superuser over the socket.

        The role may create databases so that tests can each work in a database of their own.
        """
        s = self.settings
        with psycopg.connect(
            host=str(self.socket_dir), port=s.postgres_port, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            role_exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (s.postgres_user,)).fetchone()
            verb = "ALTER" if role_exists else "CREATE"
            conn.execute(
                sql.SQL(verb + " ROLE {} LOGIN CREATEDB PASSWORD {}").format(
                    sql.Identifier(s.postgres_user), sql.Literal(s.postgres_password)
                )
            )
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (s.postgres_db,)).fetchone():
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(s.postgres_db), sql.Identifier(s.postgres_user)
                    )
                )
