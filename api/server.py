"""Run the API under uvicorn (uvloop, our JSON logs)."""

from __future__ import annotations

import uvicorn

from api.app import create_app
from openmonetize.settings import get_settings


def run() -> None:
    settings = get_settings()
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        loop="uvloop",
        log_config=None,  # keep the handlers openmonetize.logs installed
        access_log=False,  # request metrics are in /metrics; per-request lines would dominate the log
    )
