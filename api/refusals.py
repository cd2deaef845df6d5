"""What the tenancy stores (api/tenants.py, api/users_and_teams.py) raise when they refuse a
request for a reason the caller can fix. They are `ApiError`s, so a route lets them through
as they are; the operator CLI prints them as one line."""

from __future__ import annotations

from api.errors import ApiError


class Refusal(ApiError):
    status_code = 422

    def __init__(self, code: str, message: str, field: str | None = None):
        super().__init__(self.status_code, code, message, field)


class Invalid(Refusal):
    status_code = 422


class NotFound(Refusal):
    status_code = 404


class Conflict(Refusal):
    status_code = 409
