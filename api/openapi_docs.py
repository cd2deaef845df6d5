"""The answers every authenticated route may give through code it shares, added to each
operation of the OpenAPI spec where its own `responses=` does not list them, so the spec is
accurate without every route repeating them:

- 429 `rate_limited` with Retry-After: the per-key rate limit (api/rate_limits.py), and
  `too_many_unknown_keys`: an address guessing keys (api/auth.py);
- 400 `invalid_path` / `invalid_query`: a control character in the path or a query value
  (api/url_checks.py);
- 503 `database_unavailable` with Retry-After: Postgres away (api/errors.py);
- 413 `body_too_large`: the size limit of every body (api/body_limits.py);
- 400 `malformed_json`: a JSON body that does not parse (`malformed_json` in api/json_bodies.py).

It also adds the schemas routes name with `json_bodies.component` to `components/schemas`.

Routes outside API keys (health, metrics, the schema registry, which speaks Confluent's
protocol and takes its own operator credential for writes) are left as they are.
"""

from __future__ import annotations

from fastapi import FastAPI

from api.json_bodies import COMPONENTS, ERROR, content

_RETRY_AFTER = {"Retry-After": {"description": "Seconds until the key may try again", "schema": {"type": "integer"}}}
_URL = "a control character in the path or a query value, or percent-encoded bytes that are not UTF-8 " \
       "(`invalid_path`, `invalid_query`)"
SHARED = {
    "400": content(_URL[0].upper() + _URL[1:], ERROR),
    "429": {**content("This API key made more than API_RATE_LIMIT_PER_S requests per second (`rate_limited`), or "
                      "this address sent too many unknown keys (`too_many_unknown_keys`)", ERROR),
            "headers": _RETRY_AFTER},
    "503": {**content("Postgres is not answering (`database_unavailable`, `auth_unavailable`); retry after Retry-After",
                      ERROR), "headers": _RETRY_AFTER},
}
WITH_BODY = {
    "400": content(f"The body is not JSON (`malformed_json`), or {_URL}", ERROR),
    "413": content("The body is larger than API_MAX_BODY_BYTES (INGEST_MAX_BODY_BYTES for ingest; `body_too_large`)", ERROR),
}


def install(app: FastAPI) -> None:
    """Make `app.openapi()` add the shared answers to the spec it builds (once)."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            spec = build()
            add_shared_answers(spec)
            add_components(spec)
        return app.openapi_schema

    app.openapi = openapi


def add_shared_answers(spec: dict) -> None:
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            if "401" not in responses:
                continue
            shared = {**SHARED, **(WITH_BODY if "requestBody" in operation else {})}  # WITH_BODY's 400 says both
            for status, answer in shared.items():
                responses.setdefault(status, answer)


def add_components(spec: dict) -> None:
    """The schemas routes refer to by name (json_bodies.component), beside FastAPI's own."""
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for name, body in sorted(COMPONENTS.items()):
        if schemas.setdefault(name, body) != body:
            raise ValueError(f"components/schemas/{name} is both FastAPI's and json_bodies.component's")
