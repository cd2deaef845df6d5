"""An API process of a test's own (`openmonetize run api`, one worker, on a free port) against the
stack's Kafka and Postgres, with settings the stack's API does not have (a low rate limit, a
small body limit, DEBUG logs); its log goes to a file the test reads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.conftest import eventually
from tests.integration.isolated import ROOT, free_port


@contextmanager
def api_process(log_path: Path, **settings: str):
    """The base URL of a ready API process run with these settings (environment variables)."""
    port = free_port()
    env = {**os.environ, "API_PORT": str(port), "API_URL": f"http://127.0.0.1:{port}", "API_WORKERS": "1", **settings}
    with open(log_path, "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "openmonetize", "run", "api"], env=env, stdout=log,
                                   stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
    url = env["API_URL"]
    try:
        def ready():
            if process.poll() is not None:
                return "exited"
            return httpx.get(f"{url}/ready", timeout=2).status_code == 200

        if eventually(ready, timeout_s=60, interval_s=0.2, what=f"the test's API process at {url}") == "exited":
            raise AssertionError(f"the API exited with {process.returncode}: {log_path.read_text()[-2000:]}")
        yield url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
