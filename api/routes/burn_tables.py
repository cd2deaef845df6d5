"""Burn tables: how many credits each unit of usage burns, per tenant, in immutable versions.

`POST /v1/burn-tables` creates a table (version 1); `POST /v1/burn-tables/{id}/versions` adds
version max+1, whose `effective_from` (default now) may lie in the past to rebill. A version is
never edited. Rules are validated by `openmonetize.billing.burn_tables.parse_rules`, and a 422
lists every problem with its field path. Another tenant's table answers 404, like a missing one.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import msgspec
import orjson
from fastapi import APIRouter, Depends, Header, Request

from api import idempotency, json_bodies
from api.auth import tenant
from api.catalog_state import in_db, publish
from api.errors import ApiError
from openmonetize.billing import burn_tables
from openmonetize.billing.burn_tables import RulesError, parse_rules
from openmonetize.catalog.json_codec import rules_json
from openmonetize.catalog.records import BurnTableRecord
from openmonetize.stores import catalog as catalog_store
from schemas import storable

router = APIRouter(tags=["burn tables"])

Name = storable.text(200)


class BurnTableIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    rules: dict[str, Any]
    customer_id: str | None = None
    effective_from: datetime | None = None


class BurnTableVersionIn(msgspec.Struct, forbid_unknown_fields=True):
    rules: dict[str, Any]
    customer_id: str | None = None
    effective_from: datetime | None = None


class BurnTableOut(msgspec.Struct):
    burn_table_id: str
    customer_id: str
    name: str
    version: int
    effective_from: datetime
    created_at: datetime
    rules: dict[str, dict[str, Any]]


class BurnTableList(msgspec.Struct):
    burn_tables: list[BurnTableOut]


class BurnTableVersions(msgspec.Struct):
    burn_table_id: str
    customer_id: str
    name: str
    in_force_version: int | None  # the version in force now (None: all start in the future)
    versions: list[BurnTableOut]


_RATE = {"type": ["number", "string"], "description": "credits per `per_unit` units, >= 0"}
_RULES = {
    "type": "object",
    "description": "rule key (a model, EVENT_TYPE:unit_type, EVENT_TYPE or `default`) -> rates",
    "additionalProperties": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            **{name: _RATE for name in (*burn_tables.TOKEN_RATES, "image", "unit")},
            "images": {"type": "object", "description": "size or size:quality -> rate", "additionalProperties": _RATE},
            "per_unit": {"type": ["number", "string"], "description": "units the rates are per, > 0 (default 1)"},
        },
    },
}


def _with_rules(schema: dict) -> dict:
    schema["properties"]["rules"] = _RULES
    return schema


_created = json_bodies.decoder(BurnTableIn)
_versioned = json_bodies.decoder(BurnTableVersionIn)
_OUT = json_bodies.schema(BurnTableOut)
_NOT_FOUND = {404: "No burn table with this id for this tenant"}
_WRITE_ERRORS = {
    409: "The Idempotency-Key was used for a different request (`idempotency_conflict`)",
    503: "Saved but not yet published to the catalog (`catalog_unavailable`: a retry with the same key replays the "
         "201, `openmonetize catalog sync` publishes it), or Postgres unavailable (`idempotency_unavailable`)",
}
_KEY = Header(None, alias="Idempotency-Key", description=idempotency.KEY_HEADER_DOC)


@router.post(
    "/v1/burn-tables",
    summary="Create a burn table (version 1)",
    status_code=201,
    responses={201: json_bodies.content("The new table's version 1", _OUT),
               **json_bodies.errors(401, 403, 409, 413, 422, 503, descriptions=_WRITE_ERRORS)},
    openapi_extra=json_bodies.request_body(_with_rules(json_bodies.schema(BurnTableIn))),
)
async def create(request: Request, key: str | None = _KEY, customer_id: str = Depends(tenant)):
    body = await json_bodies.read(request, _created)
    json_bodies.check_customer(body.customer_id, customer_id)
    rules = _rules(body.rules)
    effective_from = json_bodies.effective_from(body.effective_from)

    def create_table(conn):
        record = catalog_store.create_burn_table(conn, customer_id, body.name.strip(), rules, effective_from)
        return 201, _encoded(record), record

    parts = (body.name.strip(), rules_json(rules), body.effective_from)
    response, record = await idempotency.respond_once(request, customer_id, key, "POST /v1/burn-tables", parts,
                                                      create_table)
    if record is not None:
        await publish(request, [record], f"burn table {record.table.burn_table_id} v1")
    return response


@router.get(
    "/v1/burn-tables",
    summary="The tenant's burn tables, latest version of each, newest table first",
    responses={200: json_bodies.content("Latest versions", json_bodies.schema(BurnTableList)), **json_bodies.errors(401)},
)
async def list_tables(request: Request, customer_id: str = Depends(tenant)):
    records = await in_db(request, catalog_store.latest_burn_tables, customer_id)
    return json_bodies.respond(BurnTableList([_out(r) for r in records]))


@router.get(
    "/v1/burn-tables/{burn_table_id}",
    summary="Every version of a burn table, oldest first, and which is in force now",
    responses={
        200: json_bodies.content("The versions", json_bodies.schema(BurnTableVersions)),
        **json_bodies.errors(401, 404, descriptions=_NOT_FOUND),
    },
)
async def get_table(request: Request, burn_table_id: str, customer_id: str = Depends(tenant)):
    records = await in_db(request, catalog_store.burn_table_versions, customer_id, burn_table_id)
    if not records:
        raise _not_found(burn_table_id)
    in_force = burn_tables.in_force([r.table for r in records], datetime.now(timezone.utc))
    latest = records[-1].table
    return json_bodies.respond(BurnTableVersions(
        burn_table_id, customer_id, latest.name, in_force.version if in_force else None, [_out(r) for r in records]
    ))


@router.post(
    "/v1/burn-tables/{burn_table_id}/versions",
    summary="Add a version (max+1); effective_from defaults to now and may be in the past (rebilling)",
    status_code=201,
    responses={
        201: json_bodies.content("The new version", _OUT),
        **json_bodies.errors(401, 403, 404, 409, 413, 422, 503, descriptions={**_NOT_FOUND, **_WRITE_ERRORS}),
    },
    openapi_extra=json_bodies.request_body(_with_rules(json_bodies.schema(BurnTableVersionIn))),
)
async def add_version(request: Request, burn_table_id: str, key: str | None = _KEY,
                      customer_id: str = Depends(tenant)):
    body = await json_bodies.read(request, _versioned)
    json_bodies.check_customer(body.customer_id, customer_id)
    rules = _rules(body.rules)
    effective_from = json_bodies.effective_from(body.effective_from)

    def add(conn):
        record = catalog_store.add_burn_table_version(conn, customer_id, burn_table_id, rules, effective_from)
        if record is None:
            raise _not_found(burn_table_id)
        return 201, _encoded(record), record

    parts = (burn_table_id, rules_json(rules), body.effective_from)
    response, record = await idempotency.respond_once(
        request, customer_id, key, "POST /v1/burn-tables/{id}/versions", parts, add)
    if record is not None:
        await publish(request, [record], f"burn table {burn_table_id} v{record.table.version}")
    return response


def _rules(raw: dict) -> dict:
    try:
        return parse_rules(raw)
    except RulesError as exc:
        raise ApiError(
            422, "invalid_rules", str(exc), exc.problems[0][0],
            details={"problems": [{"field": field, "reason": reason} for field, reason in exc.problems]},
        ) from None


def _not_found(burn_table_id: str) -> ApiError:
    return ApiError(404, "not_found", f"no burn table {burn_table_id!r} for this tenant", "burn_table_id")


def _encoded(record: BurnTableRecord) -> bytes:
    return orjson.dumps(msgspec.to_builtins(_out(record)))


def _out(record: BurnTableRecord) -> BurnTableOut:
    t = record.table
    return BurnTableOut(
        t.burn_table_id, t.customer_id, t.name, t.version, t.effective_from, record.created_at, rules_json(t.rules)
    )
