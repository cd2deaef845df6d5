"""Run the API under uvicorn (uvloop, our JSON logs).

With API_WORKERS > 1, uvicorn spawns that many worker processes sharing the port, each with its
own app (Kafka producer, API-key cache, schema id). Prometheus metrics then use prometheus_client's
multiprocess mode: every worker writes its counters to files in PROMETHEUS_MULTIPROC_DIR (a fresh
temporary directory unless set; emptied at start) and `/metrics`, in whichever worker answers,
sums them all. That mode does not report the process collectors (CPU, memory) nor the build info.
API_WORKERS=1 runs the app in this process, with the ordinary single-process metrics.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import tempfile
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from api.app import create_app
from openmonetize import logs, metrics
from openmonetize.settings import get_settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
DASHBOARD_SECRET_ENV = "DASHBOARD_SESSION_SECRET"


def run() -> None:
    settings = get_settings()
    options = dict(
        host=settings.api_host,
        port=settings.api_port,
        loop="uvloop",
        log_config=None,  # keep the handlers openmonetize.logs installed
        access_log=False,  # request metrics are in /metrics; per-request lines would dominate the log
    )
    if settings.api_workers == 1:
        uvicorn.run(create_app(settings), **options)
        return
    metrics_dir, temporary = _metrics_dir()
    # One dashboard session key for every worker (api/dashboard/sessions.py); drawn here when unset.
    if not settings.dashboard_session_secret:
        os.environ.setdefault(DASHBOARD_SECRET_ENV, secrets.token_hex(32))
    try:
        uvicorn.run("api.server:worker_app", factory=True, workers=settings.api_workers, **options)
    finally:
        if temporary:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def worker_app() -> FastAPI:
    """The app of one spawned worker process: its logs as the parent's, then the app."""
    settings = get_settings()
    logs.configure(level=settings.log_level, fmt=settings.log_format, service="api")
    metrics.describe_process("api")
    logging.getLogger("uvicorn.access").propagate = False  # access_log=False, which logs.configure just undid
    return create_app(settings)


def _metrics_dir() -> tuple[Path, bool]:
    """The multiprocess metrics directory, emptied, exported to the workers; and whether it is ours to delete."""
    configured = os.environ.get(MULTIPROC_ENV)
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
    else:
        path = Path(tempfile.mkdtemp(prefix="openmonetize-api-metrics-"))
        os.environ[MULTIPROC_ENV] = str(path)
    return path, not configured
