"""JSON request and response bodies of the control-plane routes, with msgspec.

Every JSON number of a request becomes an exact Decimal (`2.5` is Decimal("2.5"), never the
float 2.5), also inside free-form objects such as a burn table's rules; responses carry
amounts as decimal strings. The OpenAPI schemas are msgspec's, inlined. Also the checks every
control-plane body shares (its tenant, its `effective_from`).
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, TypeVar

import msgspec
from fastapi import Request

from api.errors import ApiError, json_response
from schemas import storable

T = TypeVar("T")
_AT = re.compile(r" - at `\$\.?([^`]*)`$")
_FIELD = re.compile(r"field `([^`]+)`")


def decoder(type_: type[T]) -> msgspec.json.Decoder[T]:
    return msgspec.json.Decoder(type_, float_hook=Decimal)


async def read(request: Request, decoder_: msgspec.json.Decoder[T]) -> T:
    """The body decoded, or 400 (not JSON) / 422 (wrong shape, or a value no store can hold:
    schemas/storable.py) naming the field; its size is limited before (api/body_limits.py)."""
    body = await request.body()
    try:
        decoded = decoder_.decode(body)
    except msgspec.ValidationError as exc:
        message = storable.readable(str(exc))
        at = _AT.search(message)
        field = at.group(1) if at else ""
        if named := _FIELD.search(message):  # "Object missing required field `name`"
            field = f"{field}.{named.group(1)}" if field else named.group(1)
        raise ApiError(422, "invalid_request", message.replace("`", ""), field or None) from None
    except storable.JSON_ERRORS as exc:
        raise malformed_json(exc) from None
    if found := storable.unstorable(decoded):
        field, reason = found
        raise ApiError(422, "invalid_request", f"{field}: {reason}", field)
    return decoded


def malformed_json(exc: BaseException) -> ApiError:
    """400 for a body no decoder can read (schemas.storable.JSON_ERRORS)."""
    return ApiError(400, "malformed_json", f"the body is not valid JSON: {storable.json_problem(exc)}")


def foreign_customer() -> ApiError:
    """The 403 of a request naming another tenant than its API key's."""
    return ApiError(403, "foreign_customer", "customer_id names another tenant than the API key's", "customer_id")


def check_customer(named: str | None, customer_id: str) -> None:
    """A body may name its tenant; naming another than the API key's is refused (403)."""
    if named is not None and named != customer_id:
        raise foreign_customer()


def effective_from(value: datetime | None, field: str = "effective_from") -> datetime:
    """The given instant (with a timezone, else 422), or now."""
    if value is None:
        return datetime.now(timezone.utc)
    try:
        storable.utc_instant(value)
    except ValueError as exc:
        raise ApiError(422, "invalid_request", str(exc), field) from None
    return value


def respond(body: msgspec.Struct, status: int = 200) -> Any:
    return json_response(msgspec.to_builtins(body), status)


def schema(type_: Any) -> dict:
    """The JSON schema of a msgspec type with every `$ref` inlined (OpenAPI has no `$defs`)."""
    full = msgspec.json.schema(type_)
    defs = full.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(defs[node["$ref"].rsplit("/", 1)[1]])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return inline(full)


# Named schemas for `components/schemas`, added to the spec by api.openapi_docs.install.
COMPONENTS: dict[str, dict] = {}


def component(type_: Any) -> dict:
    """A `$ref` to the schema of a msgspec type, registered under the type's name: for a body that
    several statuses of one operation answer with (200 and 202, say). Inlined twice, it reads to
    client generators (openapi-python-client) as two models of the same name, and one is dropped."""
    name, body = type_.__name__, schema(type_)
    if COMPONENTS.setdefault(name, body) != body:
        raise ValueError(f"two schemas named {name} for components/schemas")
    return {"$ref": f"#/components/schemas/{name}"}


def request_body(body_schema: dict) -> dict:
    """`openapi_extra` for a route that reads its JSON body itself."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": body_schema}}}}


def content(description: str, body_schema: dict | None = None) -> dict:
    """One `responses=` entry."""
    if body_schema is None:
        return {"description": description}
    return {"description": description, "content": {"application/json": {"schema": body_schema}}}


ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "field": {"type": "string"},
                "problems": {
                    "type": "array",
                    "items": {"type": "object", "properties": {"field": {"type": "string"}, "reason": {"type": "string"}}},
                },
            },
        }
    },
}


def errors(*statuses: int, descriptions: dict[int, str] | None = None) -> dict[int | str, dict]:
    """`responses=` entries in our error shape, with default descriptions unless given."""
    defaults = {
        401: "Missing, unknown or revoked API key",
        403: "`customer_id` names another tenant than the API key's (`foreign_customer`)",
        404: "No such resource for this tenant",
        413: "The body is too large",
        422: "The body is invalid; `field` (and `problems`) say where and why",
        503: "Kafka or the catalog is unavailable; retry later",
    }
    descriptions = {**defaults, **(descriptions or {})}
    return {status: content(descriptions[status], ERROR) for status in statuses}
