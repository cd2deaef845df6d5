"""The report route without a stack: ClickHouse down is a 503 naming the reason (not a 500), and a
bad parameter is refused before ClickHouse is asked anything."""

from __future__ import annotations

import socket

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api import errors
from api.auth import tenant
from api.routes import reports
from openmonetize.settings import Settings


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def client():
    app = FastAPI()
    app.state.settings = Settings(clickhouse_url=f"http://127.0.0.1:{closed_port()}", ingest_retry_after_s=7)
    errors.install(app)
    app.include_router(reports.router)
    app.dependency_overrides[tenant] = lambda: "cus_a"
    with TestClient(app) as client:
        yield client


def test_clickhouse_down_is_a_503_with_retry_after(client):
    for _ in range(2):  # the client is created on first use, and tried again on the next request
        response = client.get("/v1/reports/usage", params={"group_by": "user"})
        assert response.status_code == 503
        assert response.headers["retry-after"] == "7"
        assert response.json()["error"]["code"] == "reports_unavailable"
        assert "retry later" in response.json()["error"]["message"]


def test_a_bad_parameter_is_a_422_even_with_clickhouse_down(client):
    response = client.get("/v1/reports/usage", params={"granularity": "minute"})
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "granularity"
