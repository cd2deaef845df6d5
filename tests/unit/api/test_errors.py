"""The one error shape, for our errors and FastAPI's request validation errors."""

from __future__ import annotations

import orjson
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from fastapi.testclient import TestClient

from api import errors
from api.errors import ApiError
from openmonetize.stores.refusals import Conflict, Invalid, NotFound, Refusal


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


def test_a_stores_refusal_is_answered_in_the_same_shape_with_its_status():
    """The stores raise domain errors (openmonetize/stores/refusals.py); the API answers them
    as it answered the HTTP errors they used to be: same status, same body, byte for byte."""
    app = FastAPI()
    errors.install(app)
    refusals = {
        "invalid": Invalid("invalid_request", "name: must not be empty", "name"),
        "missing": NotFound("customer_not_found", "no customer c1", "customer_id"),
        "taken": Conflict("user_exists", "user_id: u1 already exists", "user_id"),
        "other": Refusal("refused", "no field to blame"),
    }

    @app.get("/refuse/{kind}")
    async def refuse(kind: str):
        raise refusals[kind]

    client = TestClient(app)
    answers = {kind: client.get(f"/refuse/{kind}") for kind in refusals}
    assert {kind: a.status_code for kind, a in answers.items()} == {"invalid": 422, "missing": 404, "taken": 409,
                                                                    "other": 422}
    assert answers["missing"].content == (b'{"error":{"code":"customer_not_found","message":"no customer c1",'
                                          b'"field":"customer_id"}}')
    assert answers["other"].json() == {"error": {"code": "refused", "message": "no field to blame"}}


def test_a_refusal_goes_through_the_handler_of_api_errors_installed_last():
    """The dashboard replaces the ApiError handler to answer its pages in HTML: a store's refusal
    on a page must reach it too."""
    app = FastAPI()
    errors.install(app)

    @app.exception_handler(ApiError)
    async def page(_request, exc: ApiError):
        return PlainTextResponse(f"page {exc.status} {exc.code}", exc.status)

    @app.get("/page")
    async def refuse():
        raise NotFound("team_not_found", "team_id: no team t1", "team_id")

    response = TestClient(app).get("/page")
    assert (response.status_code, response.text) == (404, "page 404 team_not_found")
