"""`GET /v1/dlq` and `POST /v1/dlq/retry`: the tenant's parked records and how to re-drive them.

What the pipeline could not charge (an event no burn table or price rates, one too old, a
conflicting duplicate, a debit refused under the reject policy, ...) is parked on usage.dlq with
the reason, never dropped. These routes show the caller's own records of the last 7 days, each
with what fixes its reason (`remedy`), and re-drive the ones it names once fixed: the original
record is produced to its topic again, at most 3 times, as `openmonetize dlq retry` does. The
same reads and retries back the dashboard's DLQ page (api/dlq_access.py).
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from fastapi import APIRouter, Depends, Query, Request

from api import dlq_access, json_bodies
from api.auth import tenant
from api.errors import ApiError
from schemas.dlq_reasons import KNOWN_REASONS

router = APIRouter(tags=["dlq"])
MAX_IDS = 500

DlqId = Annotated[str, msgspec.Meta(min_length=3, max_length=29, pattern=r"^[0-9]{1,9}:[0-9]{1,19}$")]  # dlq.parse_id


class RetryIn(msgspec.Struct, forbid_unknown_fields=True):
    ids: Annotated[list[DlqId], msgspec.Meta(min_length=1, max_length=MAX_IDS)]


class ParkedOut(msgspec.Struct):
    records: list[dict]  # newest first: id, failed_at, reason, stage, event_id, detail, source, remedy
    matched: int
    retry: str


class RetryOut(msgspec.Struct):
    outcomes: list[dict]  # per id: outcome (retried, skipped, failed) and why


_retry = json_bodies.decoder(RetryIn)
_HOW = "POST /v1/dlq/retry with {\"ids\": [...]} once the cause in each record's remedy is fixed"


@router.get(
    "/v1/dlq",
    summary="The tenant's parked records of the last 7 days, with the reason and what fixes it",
    responses={
        200: json_bodies.content("Newest first, at most `limit`; `matched` counts them all",
                                 json_bodies.schema(ParkedOut)),
        **json_bodies.errors(401, 403, 422, 503),
    },
)
async def parked(
    request: Request,
    reason: list[str] = Query(default_factory=list, description=f"Only these reasons: {', '.join(KNOWN_REASONS)}"),
    limit: int = Query(200, ge=1, le=1000, description="At most this many records"),
    customer_id: str = Depends(tenant),
):
    unknown = sorted(set(reason) - set(KNOWN_REASONS))
    if unknown:
        raise ApiError(422, "invalid_request", f"unknown reason {unknown[0]!r}; one of {', '.join(KNOWN_REASONS)}",
                       "reason")
    try:
        records, matched = await dlq_access.listed(request, customer_id, frozenset(reason), limit)
    except Exception as exc:  # noqa: BLE001 - Kafka or Postgres unreachable: not the client's fault
        raise _unavailable(request, exc) from exc
    return json_bodies.respond(ParkedOut(records, matched, _HOW))


@router.post(
    "/v1/dlq/retry",
    summary="Re-drive the tenant's parked records by id (`partition:offset` as listed)",
    responses={
        200: json_bodies.content("One outcome per id; an id that is not the tenant's fails as if it did not exist",
                                 json_bodies.schema(RetryOut)),
        **json_bodies.errors(401, 403, 413, 422, 503),
    },
    openapi_extra=json_bodies.request_body(json_bodies.schema(RetryIn)),
)
async def retry(request: Request, customer_id: str = Depends(tenant)):
    body = await json_bodies.read(request, _retry)
    try:
        outcomes = await dlq_access.retry(request, customer_id, body.ids)
    except Exception as exc:  # noqa: BLE001 - Kafka or Postgres unreachable: not the client's fault
        raise _unavailable(request, exc) from exc
    return json_bodies.respond(RetryOut(outcomes))


def _unavailable(request: Request, exc: Exception) -> ApiError:
    return ApiError(503, "dlq_unavailable", f"the DLQ cannot be read right now ({type(exc).__name__}); retry later",
                    headers={"Retry-After": str(request.app.state.settings.ingest_retry_after_s)})
