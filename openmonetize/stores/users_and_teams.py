"""A tenant's users and teams and team membership, in Postgres (migration 0006): the store
behind api/routes/users_and_teams.py.

User and team ids are the tenant's own (the ids its usage events carry): 1-128 characters,
letters, digits and `. _ : @ + -`, starting with a letter or digit, so that they are safe in a
URL path and a log line. Creating an id twice is a 409; lists are paged by id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

import psycopg

from openmonetize.stores.refusals import Conflict, Invalid, NotFound
from openmonetize.stores.tenants import validate_name

ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}")  # the CHECK of migration 0006
MAX_FEATURES = 200


def feature_ids(ids: list[str], field: str, code: str) -> tuple[str, ...]:
    """A list of feature ids (a plan's, a tenant's settings), duplicates dropped in order;
    Invalid with `code`, naming the field (and the index), for too many or a malformed id."""
    if len(ids) > MAX_FEATURES:
        raise Invalid(code, f"at most {MAX_FEATURES} features", field)
    for i, feature in enumerate(ids):
        if not ID.fullmatch(feature):
            raise Invalid(code, "a feature id is 1-128 letters, digits and . _ : @ + -, starting "
                          "with a letter or digit", f"{field}[{i}]")
    return tuple(dict.fromkeys(ids))


@dataclass(frozen=True)
class User:
    user_id: str
    name: str | None
    created_at: datetime


@dataclass(frozen=True)
class Team:
    team_id: str
    name: str | None
    created_at: datetime
    member_count: int


@dataclass(frozen=True)
class Membership:
    team_id: str
    user_id: str
    added_at: datetime


def validate_id(value: str, field: str) -> str:
    if not ID.fullmatch(value):
        raise Invalid(
            "invalid_id",
            f"{field}: 1-128 characters, letters, digits and . _ : @ + -, starting with a letter or digit",
            field,
        )
    return value


def create_user(conn: psycopg.Connection, customer_id: str, user_id: str, name: str | None) -> User:
    user_id = validate_id(user_id, "user_id")
    name = validate_name(name) if name is not None else None
    row = conn.execute(
        "INSERT INTO users (customer_id, user_id, name) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING "
        "RETURNING user_id, name, created_at",
        (customer_id, user_id, name),
    ).fetchone()
    if row is None:
        raise Conflict("user_exists", f"user_id: {user_id} already exists", "user_id")
    return User(*row)


def list_users(conn: psycopg.Connection, customer_id: str, after: str | None, limit: int) -> list[User]:
    """Up to `limit` users in id order, from the one after `after`."""
    rows = conn.execute(
        "SELECT user_id, name, created_at FROM users WHERE customer_id = %s AND user_id > %s "
        "ORDER BY user_id LIMIT %s",
        (customer_id, after or "", limit),
    ).fetchall()
    return [User(*row) for row in rows]


def get_user(conn: psycopg.Connection, customer_id: str, user_id: str) -> tuple[User, list[str]]:
    """A user and the ids of its teams."""
    row = conn.execute(
        "SELECT user_id, name, created_at FROM users WHERE customer_id = %s AND user_id = %s", (customer_id, user_id)
    ).fetchone()
    if row is None:
        raise NotFound("user_not_found", f"user_id: no user {user_id}", "user_id")
    teams = conn.execute(
        "SELECT team_id FROM team_members WHERE customer_id = %s AND user_id = %s ORDER BY team_id",
        (customer_id, user_id),
    ).fetchall()
    return User(*row), [team for (team,) in teams]


def create_team(conn: psycopg.Connection, customer_id: str, team_id: str, name: str | None) -> Team:
    team_id = validate_id(team_id, "team_id")
    name = validate_name(name) if name is not None else None
    row = conn.execute(
        "INSERT INTO teams (customer_id, team_id, name) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING "
        "RETURNING team_id, name, created_at, 0",
        (customer_id, team_id, name),
    ).fetchone()
    if row is None:
        raise Conflict("team_exists", f"team_id: {team_id} already exists", "team_id")
    return Team(*row)


_TEAMS = (
    "SELECT t.team_id, t.name, t.created_at, "
    "(SELECT count(*) FROM team_members m WHERE m.customer_id = t.customer_id AND m.team_id = t.team_id) "
    "FROM teams t WHERE t.customer_id = %s "
)


def list_teams(conn: psycopg.Connection, customer_id: str, after: str | None, limit: int) -> list[Team]:
    """Up to `limit` teams in id order, from the one after `after`."""
    rows = conn.execute(_TEAMS + "AND t.team_id > %s ORDER BY t.team_id LIMIT %s", (customer_id, after or "", limit))
    return [Team(*row) for row in rows.fetchall()]


def get_team(conn: psycopg.Connection, customer_id: str, team_id: str) -> tuple[Team, list[str]]:
    """A team and the ids of its members."""
    row = conn.execute(_TEAMS + "AND t.team_id = %s", (customer_id, team_id)).fetchone()
    if row is None:
        raise NotFound("team_not_found", f"team_id: no team {team_id}", "team_id")
    members = conn.execute(
        "SELECT user_id FROM team_members WHERE customer_id = %s AND team_id = %s ORDER BY user_id",
        (customer_id, team_id),
    ).fetchall()
    return Team(*row), [user for (user,) in members]


def add_member(conn: psycopg.Connection, customer_id: str, team_id: str, user_id: str) -> tuple[Membership, bool]:
    """Put a user in a team; the membership and whether it is new (adding twice changes nothing)."""
    _must_exist(conn, "teams", "team_id", customer_id, team_id)
    _must_exist(conn, "users", "user_id", customer_id, user_id)
    # A no-op update on conflict makes RETURNING answer for an existing membership too; xmax is
    # 0 only for a row this statement inserted.
    added_at, new = conn.execute(
        "INSERT INTO team_members (customer_id, team_id, user_id) VALUES (%s, %s, %s) "
        "ON CONFLICT (customer_id, team_id, user_id) DO UPDATE SET added_at = team_members.added_at "
        "RETURNING added_at, xmax = 0",
        (customer_id, team_id, user_id),
    ).fetchone()
    return Membership(team_id, user_id, added_at), new


def remove_member(conn: psycopg.Connection, customer_id: str, team_id: str, user_id: str) -> None:
    _must_exist(conn, "teams", "team_id", customer_id, team_id)
    removed = conn.execute(
        "DELETE FROM team_members WHERE customer_id = %s AND team_id = %s AND user_id = %s",
        (customer_id, team_id, user_id),
    ).rowcount
    if not removed:
        raise NotFound("not_a_member", f"user_id: {user_id} is not a member of team {team_id}", "user_id")


def _must_exist(conn: psycopg.Connection, table: str, column: str, customer_id: str, value: str) -> None:
    found = conn.execute(
        f"SELECT 1 FROM {table} WHERE customer_id = %s AND {column} = %s", (customer_id, value)
    ).fetchone()
    if found is None:
        noun = column.removesuffix("_id")
        raise NotFound(f"{noun}_not_found", f"{column}: no {noun} {value}", column)
