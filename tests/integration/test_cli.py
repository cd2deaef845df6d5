"""The `openmonetize` command against the running test stack."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx
import orjson
import psycopg
import pytest

from deploy.local_stack.supervisor import workers
from openmonetize.stores import tenants
from tests.conftest import eventually

COMMANDS = [
    [], ["stack"], ["stack", "up"], ["stack", "down"], ["stack", "status"], ["stack", "env"], ["stack", "logs"],
    ["admin"], ["admin", "create-customer"], ["migrate"],
    ["run"], ["run", "api"], ["run", "worker"], ["run", "sink-ledger"], ["run", "sink-clickhouse"], ["run", "clickhouse"], ["run", "supervisor"],
    ["run", "proxy"], ["proxy"],
]


def om(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "openmonetize", *args], capture_output=True, text=True, timeout=180)
    if check and result.returncode != 0:
        raise AssertionError(f"openmonetize {' '.join(args)} exited {result.returncode}: {result.stderr}")
    return result


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "top")
def test_help_on_every_level(command):
    result = om(*command, "--help")
    assert result.stdout.startswith("Usage: ")


def test_stack_env_prints_the_four_urls(settings):
    lines = dict(line.split("=", 1) for line in om("stack", "env").stdout.splitlines())
    assert lines["KAFKA_BOOTSTRAP"] == settings.kafka_bootstrap
    assert lines["DATABASE_URL"] == settings.database_url
    assert lines["CLICKHOUSE_URL"] == settings.clickhouse_url
    assert lines["API_URL"] == settings.api_url


def test_stack_status_reports_every_service_running(settings):
    states = orjson.loads(om("stack", "status", "--json").stdout)["services"]
    assert set(states) == {"kafka", "postgres", "supervisor", "clickhouse", "api", *workers(settings), "sink-ledger",
                           "sink-clickhouse", "proxy"}
    assert all(state == "running" for state in states.values()), states


def test_stack_up_on_a_running_stack_is_harmless():
    result = om("stack", "up")
    for service in ("kafka", "postgres", "supervisor"):
        assert f"✓ {service}: already running" in result.stderr
    assert "migrate postgres: up to date" in result.stderr


def test_create_customer_json_gives_a_working_key(settings):
    out = orjson.loads(om("admin", "create-customer", "Acme AI", "--json").stdout)
    assert set(out) == {"customer_id", "api_key"}
    assert out["customer_id"].startswith("cus_") and out["api_key"].startswith("om_")
    with psycopg.connect(settings.database_url) as conn:
        assert tenants.customer_for_key(conn, out["api_key"]) == out["customer_id"]
        assert tenants.customer_for_key(conn, out["api_key"] + "x") is None
        stored = conn.execute("SELECT key_hash FROM api_keys WHERE customer_id = %s", (out["customer_id"],)).fetchone()
        assert out["api_key"].encode() not in bytes(stored[0])  # only the hash is stored


def test_create_customer_refuses_a_blank_name():
    result = om("admin", "create-customer", "   ", check=False)
    assert result.returncode == 2
    assert "name: must not be empty" in result.stderr


def test_migrate_twice_is_up_to_date():
    om("migrate")
    assert om("migrate").stdout.splitlines() == ["postgres: up to date", "clickhouse: up to date"]


def test_stack_logs_show_the_api_log():
    result = om("stack", "logs", "api", "-n", "5")
    assert result.stdout.strip(), "the api log is empty"
    assert om("stack", "logs", "nonsense", check=False).returncode == 1


def test_supervisor_restarts_a_dead_api(settings):
    pid_file = settings.stack_dir / "run" / "api.pid"
    old_pid = int(pid_file.read_text())
    os.kill(old_pid, signal.SIGKILL)

    def restarted():
        new_pid = int(pid_file.read_text())
        return new_pid != old_pid and httpx.get(f"{settings.api_url}/ready", timeout=1).status_code == 200

    eventually(restarted, timeout_s=60, interval_s=0.2, what="the supervisor to restart the api")

    def old_group_gone():
        try:
            os.killpg(old_pid, 0)  # the dead api's worker processes would still hold its port
        except ProcessLookupError:
            return True
        return False

    eventually(old_group_gone, timeout_s=10, what="the old api's worker processes to be gone")
