"""The dashboard acts as the signed-in key's tenant by calling our own JSON API IN PROCESS
(httpx over ASGI, no socket): the very route code a client's request runs, with the same
authentication, tenant checks, validation, idempotency and error shapes. Nothing the API does
is written twice, and the dashboard cannot see more than the key can.

What the JSON API does not offer (the list of a tenant's wallets, its rebilling runs, usage
rows for a burn-table preview, the DLQ) is read by `reads.py` through the same stores the API
and the CLI use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx
import orjson
from fastapi import Request

from api.dashboard.sessions import Session

BASE_URL = "http://dashboard.internal"


@dataclass
class Answer:
    status: int
    body: dict
    text: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def error(self) -> dict:
        """The API's `{"error": {code, message, field}}`, or one made from the status."""
        found = self.body.get("error") if isinstance(self.body, dict) else None
        if isinstance(found, dict):
            return found
        return {"code": f"http_{self.status}", "message": self.text[:300] or f"HTTP {self.status}"}


def client(request: Request) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=request.app), base_url=BASE_URL, timeout=60)


async def call(request: Request, session: Session, method: str, path: str, *, params: dict | None = None,
               json: object = None, headers: dict | None = None) -> Answer:
    """One request to our own API as the session's tenant. Amounts in `json` go as decimal strings."""
    sent = {"X-OM-Api-Key": session.api_key, **(headers or {})}
    params = {k: v for k, v in (params or {}).items() if v not in (None, "")}
    async with client(request) as http:
        response = await http.request(method, path, params=params, json=json, headers=sent)
    try:
        body = orjson.loads(response.content) if response.content else {}
    except orjson.JSONDecodeError:
        body = {}
    return Answer(response.status_code, body, response.text)


_INTEGER = re.compile(r"-?[0-9]{1,30}")


def json_int(text: str) -> int | str:
    """An integer form field for a JSON body: an int when it is one (ASCII digits only: `²` is a
    digit to `str.isdigit` but not to `int`; at most 30, far from `int`'s own limit), else the
    text as typed, which the API then refuses naming the field."""
    return int(text) if _INTEGER.fullmatch(text) else text
