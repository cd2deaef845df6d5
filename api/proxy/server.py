"""Run the AI proxy under uvicorn (uvloop, httptools, our JSON logs), one process."""

from __future__ import annotations

import uvicorn

from api.proxy.app import create_app
from openmonetize.settings import Settings


def run(settings: Settings) -> None:
    uvicorn.run(create_app(settings), host=settings.proxy_host, port=settings.proxy_port, loop="uvloop", http="httptools",
                log_config=None, access_log=False)
