"""The one error shape, for our errors and FastAPI's request validation errors."""

from __future__ import annotations

import orjson
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api import errors
from api.errors import ApiError


def test_api_error_response_has_code_message_and_field_only_when_set():
    response = ApiError(413, "too_many_events", "too many", field="events", headers={"Retry-After": "5"}).response()
    assert response.status_code == 413
    assert response.headers["retry-after"] == "5"
    assert orjson.loads(response.body) == {"error": {"code": "too_many_events", "message": "too many", "field": "events"}}
    assert orjson.loads(ApiError(401, "x", "y").response().body) == {"error": {"code": "x", "message": "y"}}


def test_extra_keys_sit_beside_the_error():
    body = orjson.loads(ApiError(503, "kafka_unavailable", "down", extra={"accepted": 3}).response().body)
    assert body == {"error": {"code": "kafka_unavailable", "message": "down"}, "accepted": 3}


def test_installed_handlers_answer_api_errors_and_validation_errors():
    app = FastAPI()
    errors.install(app)

    @app.get("/boom")
    async def boom():
        raise ApiError(403, "foreign_customer", "not yours", field="customer_id")

    @app.get("/typed")
    async def typed(limit: int):
        return {"limit": limit}

    client = TestClient(app)
    assert client.get("/boom").json() == {
        "error": {"code": "foreign_customer", "message": "not yours", "field": "customer_id"}
    }
    response = client.get("/typed", params={"limit": "many"})
    assert response.status_code == 422
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("invalid_request", "query.limit")
    assert "query.limit" in error["message"]
