"""Who a proxied call is billed to, from its `X-OM-*` headers. Only `X-OM-Api-Key` identifies
the tenant: `Authorization` and the providers' key headers belong to the provider and pass
through untouched."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.datastructures import Headers

from api.auth import ApiKeys, KeyGuessing
from api.proxy.calls import Refusal
from openmonetize.stores import tenants

MAX_ID = 128  # as the usage event's ids


@dataclass(frozen=True)
class Identity:
    customer_id: str
    user_id: str
    team_id: str | None
    feature_id: str


async def identify(headers: Headers, api_keys: ApiKeys, address: str | None = None) -> Identity:
    key = (headers.get("x-om-api-key") or "").strip()
    if not key:
        raise Refusal(401, "authentication", "OpenMonetize proxy: no X-OM-Api-Key header; send your OpenMonetize API key "
                                             "in it (the provider's key stays in its usual header)")
    customer_id = None
    if key.startswith(tenants.KEY_PREFIX):
        try:
            customer_id = await api_keys.customer_for(key, address)
        except KeyGuessing:
            raise Refusal(429, "rate_limit", "OpenMonetize proxy: too many unknown X-OM-Api-Key values from this "
                                             "address; retry later") from None
        except Exception as exc:  # noqa: BLE001 - Postgres down or the pool exhausted: not the client's fault
            raise Refusal(503, "unavailable", f"OpenMonetize proxy: API keys cannot be checked right now "
                                              f"({type(exc).__name__}); retry later") from exc
    if customer_id is None:
        raise Refusal(401, "authentication", "OpenMonetize proxy: X-OM-Api-Key is unknown or revoked")
    claimed = headers.get("x-om-customer-id")
    if claimed is not None and claimed != customer_id:
        raise Refusal(403, "permission", "OpenMonetize proxy: X-OM-Customer-Id names another tenant than X-OM-Api-Key's")
    return Identity(customer_id, _id(headers, "X-OM-User-Id"), _id(headers, "X-OM-Team-Id", required=False),
                    _id(headers, "X-OM-Feature-Id"))


def _id(headers: Headers, name: str, required: bool = True) -> str | None:
    value = headers.get(name)
    if value is None or not value.strip():
        if required:
            raise Refusal(400, "invalid_request", f"OpenMonetize proxy: the {name} header is required")
        return None
    value = value.strip()
    if len(value) > MAX_ID:
        raise Refusal(400, "invalid_request", f"OpenMonetize proxy: {name} is {len(value)} characters, at most {MAX_ID}")
    return value
