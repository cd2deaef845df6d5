"""A tenant's users and teams, and team membership (store: openmonetize/stores/users_and_teams.py).

The path's customer id must be the API key's tenant (403 otherwise). Ids are the tenant's own
and must match `[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}` (422 `invalid_id` naming the field);
creating an existing id is a 409. Lists are in id order, paged with `limit` and an opaque
`next_cursor` (null on the last page).
"""

from __future__ import annotations

from datetime import datetime

import msgspec
import orjson
from fastapi import APIRouter, Depends, Header, Query, Request, Response

from api import cursors, idempotency, json_bodies
from api.auth import tenant
from api.catalog_state import in_db
from openmonetize.stores import users_and_teams as store

router = APIRouter(tags=["users and teams"])
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
_ID_DOC = "1-128 characters: letters, digits and . _ : @ + -, starting with a letter or digit"


class UserIn(msgspec.Struct, forbid_unknown_fields=True):
    user_id: str
    name: str | None = None


class TeamIn(msgspec.Struct, forbid_unknown_fields=True):
    team_id: str
    name: str | None = None


class UserOut(msgspec.Struct):
    user_id: str
    name: str | None
    created_at: datetime


class UserDetailOut(msgspec.Struct):
    user_id: str
    name: str | None
    created_at: datetime
    teams: list[str]  # the ids of its teams


class UsersOut(msgspec.Struct):
    users: list[UserOut]
    next_cursor: str | None


class TeamOut(msgspec.Struct):
    team_id: str
    name: str | None
    created_at: datetime
    member_count: int


class TeamDetailOut(msgspec.Struct):
    team_id: str
    name: str | None
    created_at: datetime
    member_count: int
    members: list[str]  # user ids


class TeamsOut(msgspec.Struct):
    teams: list[TeamOut]
    next_cursor: str | None


class MembershipOut(msgspec.Struct):
    team_id: str
    user_id: str
    added_at: datetime


_user = json_bodies.decoder(UserIn)
_team = json_bodies.decoder(TeamIn)
_CURSOR = Query(None, max_length=1000, description="next_cursor of the previous page")
_LIMIT = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="Items per page")
_KEY = Header(None, alias="Idempotency-Key", description=idempotency.KEY_HEADER_DOC)
_WRITE_ERRORS = json_bodies.errors(400, 401, 403, 409, 413, 422, 503, descriptions={
    503: "Postgres is unavailable (`idempotency_unavailable`); retry with the same key",
    400: "The body is not JSON (`malformed_json`)",
    409: "The id exists already (`user_exists`, `team_exists`), or the Idempotency-Key was used for a different "
         "request (`idempotency_conflict`)",
    422: "A field is invalid (`invalid_id`, `invalid_request`); `field` names it",
})


def _body(type_, id_field: str) -> dict:
    schema = json_bodies.schema(type_)
    schema["properties"][id_field]["description"] = _ID_DOC
    return json_bodies.request_body(schema)


@router.post(
    "/v1/customers/{customer_id}/users",
    summary="Add a user to the tenant's directory",
    status_code=201,
    responses={201: json_bodies.content("The user", json_bodies.schema(UserOut)), **_WRITE_ERRORS},
    openapi_extra=_body(UserIn, "user_id"),
)
async def create_user(request: Request, customer_id: str, key: str | None = _KEY, caller: str = Depends(tenant)):
    json_bodies.check_customer(customer_id, caller)
    body = await json_bodies.read(request, _user)

    def create(conn):
        user = store.create_user(conn, caller, body.user_id, body.name)
        return 201, orjson.dumps(msgspec.to_builtins(UserOut(user.user_id, user.name, user.created_at))), user

    route = "POST /v1/customers/{id}/users"
    return (await idempotency.respond_once(request, caller, key, route, (body,), create))[0]


@router.get(
    "/v1/customers/{customer_id}/users",
    summary="The tenant's users, in id order, paged",
    responses={200: json_bodies.content("A page of users", json_bodies.schema(UsersOut)),
               **json_bodies.errors(401, 403, 422)},
)
async def list_users(
    request: Request, customer_id: str, cursor: str | None = _CURSOR, limit: int = _LIMIT,
    caller: str = Depends(tenant),
):
    json_bodies.check_customer(customer_id, caller)
    after = cursors.decode(cursor, 1)[0] if cursor is not None else None
    found = await in_db(request, store.list_users, caller, after, limit + 1)
    users = found[:limit]
    next_cursor = cursors.encode(users[-1].user_id) if len(found) > limit else None
    return json_bodies.respond(UsersOut([UserOut(u.user_id, u.name, u.created_at) for u in users], next_cursor))


@router.get(
    "/v1/customers/{customer_id}/users/{user_id}",
    summary="A user of the tenant, with its teams",
    responses={200: json_bodies.content("The user", json_bodies.schema(UserDetailOut)),
               **json_bodies.errors(401, 403, 404, descriptions={404: "No such user (`user_not_found`)"})},
)
async def get_user(request: Request, customer_id: str, user_id: str, caller: str = Depends(tenant)):
    json_bodies.check_customer(customer_id, caller)
    user, teams = await in_db(request, store.get_user, caller, user_id)
    return json_bodies.respond(UserDetailOut(user.user_id, user.name, user.created_at, teams))


@router.post(
    "/v1/customers/{customer_id}/teams",
    summary="Create a team",
    status_code=201,
    responses={201: json_bodies.content("The team", json_bodies.schema(TeamOut)), **_WRITE_ERRORS},
    openapi_extra=_body(TeamIn, "team_id"),
)
async def create_team(request: Request, customer_id: str, key: str | None = _KEY, caller: str = Depends(tenant)):
    json_bodies.check_customer(customer_id, caller)
    body = await json_bodies.read(request, _team)

    def create(conn):
        team = store.create_team(conn, caller, body.team_id, body.name)
        return 201, orjson.dumps(msgspec.to_builtins(_team_out(team))), team

    route = "POST /v1/customers/{id}/teams"
    return (await idempotency.respond_once(request, caller, key, route, (body,), create))[0]


@router.get(
    "/v1/customers/{customer_id}/teams",
    summary="The tenant's teams, in id order, paged",
    responses={200: json_bodies.content("A page of teams", json_bodies.schema(TeamsOut)),
               **json_bodies.errors(401, 403, 422)},
)
async def list_teams(
    request: Request, customer_id: str, cursor: str | None = _CURSOR, limit: int = _LIMIT,
    caller: str = Depends(tenant),
):
    json_bodies.check_customer(customer_id, caller)
    after = cursors.decode(cursor, 1)[0] if cursor is not None else None
    found = await in_db(request, store.list_teams, caller, after, limit + 1)
    teams = found[:limit]
    next_cursor = cursors.encode(teams[-1].team_id) if len(found) > limit else None
    return json_bodies.respond(TeamsOut([_team_out(t) for t in teams], next_cursor))


@router.get(
    "/v1/customers/{customer_id}/teams/{team_id}",
    summary="A team of the tenant, with its members",
    responses={200: json_bodies.content("The team", json_bodies.schema(TeamDetailOut)),
               **json_bodies.errors(401, 403, 404, descriptions={404: "No such team (`team_not_found`)"})},
)
async def get_team(request: Request, customer_id: str, team_id: str, caller: str = Depends(tenant)):
    json_bodies.check_customer(customer_id, caller)
    team, members = await in_db(request, store.get_team, caller, team_id)
    return json_bodies.respond(TeamDetailOut(team.team_id, team.name, team.created_at, team.member_count, members))


_MEMBER_404 = "No such team (`team_not_found`) or user (`user_not_found`)"


@router.put(
    "/v1/customers/{customer_id}/teams/{team_id}/members/{user_id}",
    summary="Put a user in a team (201 when new, 200 when it was a member already)",
    responses={
        200: json_bodies.content("Already a member; unchanged", json_bodies.component(MembershipOut)),
        201: json_bodies.content("Added", json_bodies.component(MembershipOut)),
        **json_bodies.errors(401, 403, 404, descriptions={404: _MEMBER_404}),
    },
)
async def add_member(request: Request, customer_id: str, team_id: str, user_id: str, caller: str = Depends(tenant)):
    json_bodies.check_customer(customer_id, caller)
    membership, new = await in_db(request, store.add_member, caller, team_id, user_id)
    out = MembershipOut(membership.team_id, membership.user_id, membership.added_at)
    return json_bodies.respond(out, 201 if new else 200)


@router.delete(
    "/v1/customers/{customer_id}/teams/{team_id}/members/{user_id}",
    summary="Take a user out of a team",
    status_code=204,
    responses={204: {"description": "Removed"}, **json_bodies.errors(401, 403, 404, descriptions={
        404: "No such team (`team_not_found`), or the user is not a member (`not_a_member`)"})},
)
async def remove_member(request: Request, customer_id: str, team_id: str, user_id: str, caller: str = Depends(tenant)):
    json_bodies.check_customer(customer_id, caller)
    await in_db(request, store.remove_member, caller, team_id, user_id)
    return Response(status_code=204)


def _team_out(team: store.Team) -> TeamOut:
    return TeamOut(team.team_id, team.name, team.created_at, team.member_count)
