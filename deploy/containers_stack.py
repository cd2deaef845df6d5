"""`OM_TEST_BACKEND=containers make test`: the test suite against Kafka (`apache/kafka`), Postgres and
`clickhouse/clickhouse-server` run as Docker containers by testcontainers, for machines with a Docker
engine. The API, worker, sinks and proxy still run as local processes (`openmonetize stack up` with
STACK_SERVICES naming only them), as on the default backend, the local stack.

The images are the ones deploy/docker-compose.yml runs, and so are the broker's settings: one place
for both. Without a Docker engine it stops at once with a message saying how to run the suite on the
default backend.

    python -m deploy.containers_stack [PYTEST ARGS]    # what deploy/run-tests.sh runs for this backend
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "deploy" / "docker-compose.yml"
# What the containers replace; the rest of the stack runs locally.
LOCAL_PROCESSES = "api,worker,sink-ledger,sink-clickhouse,proxy"
USER = PASSWORD = DATABASE = "openmonetize"


def no_engine_message(problem: str) -> str:
    return (f"error: OM_TEST_BACKEND=containers needs a Docker engine, and there is no Docker engine here ({problem}). "
            "Run the suite on the default backend, the project's own local stack: `make test` "
            "(with OM_TEST_BACKEND unset, or OM_TEST_BACKEND=local).")


def docker_engine_problem() -> str | None:
    """Why no Docker engine answers (DOCKER_HOST, else the default socket), or None when one does."""
    import docker  # testcontainers' own client library

    try:
        client = docker.from_env(timeout=5)
        try:
            client.ping()
        finally:
            client.close()
    except docker.errors.DockerException as exc:
        return str(exc)
    return None


def compose_services() -> dict:
    import yaml

    return yaml.safe_load(COMPOSE_FILE.read_text())["services"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def containers() -> Iterator[dict[str, str]]:
    """Kafka, Postgres and ClickHouse running; yields the settings that point the stack at them."""
    from testcontainers.community.clickhouse import ClickHouseContainer
    from testcontainers.community.postgres import PostgresContainer
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy

    services = compose_services()
    kafka_port = _free_port()  # advertised to clients before the broker starts, so bound, not random
    kafka = DockerContainer(services["kafka"]["image"]).with_envs(**{
        **services["kafka"]["environment"],
        "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://localhost:9092,HOST://localhost:{kafka_port}",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
    }).with_bind_ports(9094, kafka_port).waiting_for(LogMessageWaitStrategy("Kafka Server started"))
    postgres = PostgresContainer(services["postgres"]["image"], username=USER, password=PASSWORD, dbname=DATABASE,
                                 driver=None)
    clickhouse = ClickHouseContainer(services["clickhouse"]["image"], username=USER, password=PASSWORD,
                                     dbname=DATABASE).with_env("CLICKHOUSE_DEFAULT_ACCESS_MANAGEMENT", "1")
    with ExitStack() as running:
        for container in (kafka, postgres, clickhouse):
            running.enter_context(container)
        host = clickhouse.get_container_host_ip()
        yield {
            "KAFKA_BOOTSTRAP": f"localhost:{kafka_port}",
            "DATABASE_URL": postgres.get_connection_url(),
            "CLICKHOUSE_URL": f"http://{USER}:{PASSWORD}@{host}:{clickhouse.get_exposed_port(8123)}",
            "STACK_SERVICES": LOCAL_PROCESSES,
        }


def main(pytest_args: list[str]) -> int:
    problem = docker_engine_problem()
    if problem is not None:
        print(no_engine_message(problem), file=sys.stderr)
        return 2
    om = [sys.executable, "-m", "openmonetize"]
    with containers() as settings:
        env = {**os.environ, **settings}
        print(f"containers up: {settings}", flush=True)
        for step in (["topics", "create"], ["stack", "up"]):
            if subprocess.run([*om, *step], env=env, cwd=ROOT).returncode != 0:
                print(f"error: `openmonetize {' '.join(step)}` failed against the containers", file=sys.stderr)
                subprocess.run([*om, "stack", "down"], env=env, cwd=ROOT)
                return 1
        try:
            subprocess.run([sys.executable, "-m", "deploy.local_stack.browser"], env=env, cwd=ROOT)
            return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *pytest_args],
                                  env=env, cwd=ROOT).returncode
        finally:
            subprocess.run([*om, "stack", "down"], env=env, cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
