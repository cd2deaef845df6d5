"""The customer dashboard and sandbox, served by the API at /dashboard: server-rendered Jinja2
templates, inline SVG charts, a little vanilla JavaScript, assets served from
api/dashboard/static. docs/guides/dashboard.md says why and how."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api.dashboard import guard, sandbox
from api.dashboard.pages import ROUTERS

STATIC = Path(__file__).parent / "static"


def install(app: FastAPI) -> None:
    guard.install(app)
    for router in ROUTERS:
        app.include_router(router)
    app.include_router(sandbox.router)
    app.mount("/dashboard/static", StaticFiles(directory=STATIC), name="dashboard-static")
