"""The API key's own tenant's keys: create (the secret is shown once, only its hash is kept),
list (never the secret) and revoke.

A revoked key stops working in every API process within milliseconds (api/auth.py). A tenant
cannot revoke its last active key (409 `last_active_key`): it would lock itself out, and only
the operator could give it a key again; the operator can (`openmonetize admin api-keys revoke`).
`last_used_at` is recorded at most once a minute per key.
"""

from __future__ import annotations

from datetime import datetime

import msgspec
import orjson
from fastapi import APIRouter, Depends, Header, Request

from api import idempotency, json_bodies
from api.auth import tenant
from api.catalog_state import in_db
from openmonetize.stores import tenants

router = APIRouter(tags=["api keys"])


class KeyIn(msgspec.Struct, forbid_unknown_fields=True):
    name: str = "default"


class KeyOut(msgspec.Struct):
    id: str
    name: str
    prefix: str  # the key's first 11 characters, to tell keys apart
    created_at: datetime
    last_used_at: datetime | None  # to the minute
    revoked_at: datetime | None


class NewKeyOut(msgspec.Struct):
    id: str
    name: str
    prefix: str
    created_at: datetime
    api_key: str | None  # the secret: shown this once, never again (null in an Idempotency-Key replay)


class KeysOut(msgspec.Struct):
    api_keys: list[KeyOut]  # newest first, revoked ones included


_decoder = json_bodies.decoder(KeyIn)
_KEY = Header(None, alias="Idempotency-Key", description=idempotency.KEY_HEADER_DOC)


@router.post(
    "/v1/api-keys",
    summary="Create an API key for the caller's tenant; the secret is in this answer only",
    status_code=201,
    responses={
        201: json_bodies.content("The new key, with its secret `api_key` (null when an Idempotency-Key replays the "
                                 "answer: the secret is never stored; revoke that key if it was lost)",
                                 json_bodies.schema(NewKeyOut)),
        **json_bodies.errors(400, 401, 409, 413, 422, 503, descriptions={
            400: "The body is not JSON (`malformed_json`)",
            409: "The Idempotency-Key was used for a different request (`idempotency_conflict`)",
            503: "Postgres is unavailable (`idempotency_unavailable`)"}),
    },
    openapi_extra={"requestBody": {"required": False, "content": {"application/json": {
        "schema": {**json_bodies.schema(KeyIn), "description": "name: 1-200 characters (default `default`)"}}}}},
)
async def create(request: Request, idempotency_key: str | None = _KEY, caller: str = Depends(tenant)):
    body = await json_bodies.read(request, _decoder) if await request.body() else KeyIn()

    def create_key(conn):
        new = tenants.create_api_key(conn, caller, body.name)
        key = new.key
        return 201, orjson.dumps(msgspec.to_builtins(
            NewKeyOut(key.key_id, key.name, key.prefix, key.created_at, new.api_key))), new

    response, _ = await idempotency.respond_once(request, caller, idempotency_key, "POST /v1/api-keys", (body,),
                                                 create_key, stored=_without_secret)
    return response


def _without_secret(body: bytes) -> bytes:
    """What a replay answers: the key, not its secret (only its hash is ever stored)."""
    return orjson.dumps({**orjson.loads(body), "api_key": None})


@router.get(
    "/v1/api-keys",
    summary="The caller's tenant's API keys (never their secrets)",
    responses={200: json_bodies.content("The keys", json_bodies.schema(KeysOut)), **json_bodies.errors(401)},
)
async def list_keys(request: Request, caller: str = Depends(tenant)):
    keys = await in_db(request, tenants.list_api_keys, caller)
    return json_bodies.respond(KeysOut([_out(key) for key in keys]))


@router.delete(
    "/v1/api-keys/{key_id}",
    summary="Revoke an API key of the caller's tenant (final; revoking twice changes nothing)",
    responses={
        200: json_bodies.content("The revoked key", json_bodies.schema(KeyOut)),
        **json_bodies.errors(401, 404, 409, descriptions={
            404: "No such key for this tenant (`api_key_not_found`)",
            409: "It is the tenant's last active key (`last_active_key`): create another first",
        }),
    },
)
async def revoke(request: Request, key_id: str, caller: str = Depends(tenant)):
    return json_bodies.respond(_out(await in_db(request, tenants.revoke_api_key, caller, key_id)))


def _out(key: tenants.ApiKey) -> KeyOut:
    return KeyOut(key.key_id, key.name, key.prefix, key.created_at, key.last_used_at, key.revoked_at)
