"""The containers backend of the test suite (deploy/containers_stack.py). These machines have no
Docker engine, so what runs here is its one path without one: stop at once, say so, and say how to
run the suite on the default backend. The images it starts are the compose file's."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from deploy import containers_stack
from openmonetize.settings import LOCAL_SERVICES

ROOT = containers_stack.ROOT


@pytest.fixture
def no_docker_engine():
    problem = containers_stack.docker_engine_problem()
    if problem is None:
        pytest.skip("a Docker engine answers here: the backend would start containers, not refuse")
    return problem


def _assert_refused(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    message = result.stderr.strip()
    assert message.startswith("error: OM_TEST_BACKEND=containers needs a Docker engine, and there is no Docker engine here"), message
    assert "`make test` (with OM_TEST_BACKEND unset, or OM_TEST_BACKEND=local)" in message
    assert len(message.splitlines()) == 1, message  # one clear line, no traceback
    assert result.stdout == ""  # no container, no stack, no pytest started


def test_without_a_docker_engine_it_stops_at_once_and_names_the_default_backend(no_docker_engine):
    result = subprocess.run([sys.executable, "-m", "deploy.containers_stack", "-q"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    _assert_refused(result)


def test_make_test_dispatches_to_it(no_docker_engine):
    """What `OM_TEST_BACKEND=containers make test` runs: deploy/run-tests.sh, with the project's .venv."""
    if not (ROOT / ".venv" / "bin" / "python").exists():
        pytest.skip("no .venv in the checkout: deploy/run-tests.sh runs .venv/bin/python")
    env = {**os.environ, "OM_TEST_BACKEND": "containers"}
    _assert_refused(subprocess.run(["bash", "deploy/run-tests.sh", "-q"], cwd=ROOT, env=env, capture_output=True,
                                   text=True, timeout=60))


def test_an_unknown_backend_is_refused():
    env = {**os.environ, "OM_TEST_BACKEND": "docker"}
    result = subprocess.run(["bash", "deploy/run-tests.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: OM_TEST_BACKEND=docker: use local (the default) or containers"


def test_the_containers_are_the_compose_files_images():
    services = containers_stack.compose_services()
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")
    # the containers stand for the stack's infrastructure; every other service still runs locally
    assert set(containers_stack.LOCAL_PROCESSES.split(",")) | {"kafka", "postgres", "clickhouse"} == set(LOCAL_SERVICES)
