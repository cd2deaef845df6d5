"""Rebilling runs over HTTP: `POST /v1/rebilling/runs` starts one for the key's tenant (a dry
run unless `"dry_run": false`), `GET /v1/rebilling/runs/{run_id}` reads its record.

A run re-reads usage.events and may take minutes, so it is not done in the request: the route
records the run (`queued`) and starts `openmonetize replay --run-id ...` as a process of its
own, which does exactly what the CLI does (openmonetize/rebilling/) and records its status and
totals on the run; poll the GET until `completed` or `failed`. Another tenant's run is 404.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import datetime
from decimal import Decimal

import msgspec
import orjson
from fastapi import APIRouter, Depends, Header, Request

from api import idempotency, json_bodies
from api.auth import tenant
from api.catalog_state import in_db
from api.errors import ApiError
from openmonetize.catalog.json_codec import decimal_text
from openmonetize.rebilling.replay import ReplayRequest
from openmonetize.stores import replay_runs as runs
from schemas import storable

router = APIRouter(tags=["rebilling"])

UserId = storable.ident(128)


class RunIn(msgspec.Struct, forbid_unknown_fields=True):
    start: datetime = msgspec.field(name="from")
    end: datetime = msgspec.field(name="to")
    user_ids: list[UserId] = []
    burn_table_version: int | None = None
    dry_run: bool = True
    rebuild_analytics: bool = False
    force: bool = False
    customer_id: str | None = None


class UserLine(msgspec.Struct):
    user_id: str
    events: int
    duplicates: int
    conflicts: int
    uncharged: int
    unrateable: int
    adjusted: int
    charged: str
    rerated: str
    difference: str


class RunOut(msgspec.Struct):
    run_id: str
    customer_id: str
    mode: str  # dry_run | apply
    status: str  # queued | running | completed | failed | interrupted
    user_ids: list[str]
    start: datetime = msgspec.field(name="from")
    end: datetime = msgspec.field(name="to")
    burn_table_version: int | None = None
    rebuild_analytics: bool = False
    requested_by: str = ""
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    events: int = 0
    duplicates: int = 0
    conflicts: int = 0
    uncharged: int = 0
    unrateable: int = 0
    adjusted: int = 0
    charged: str = "0"  # credits the ledger held for the events before the run
    rerated: str = "0"
    difference: str = "0"  # rerated - charged: > 0 was debited, < 0 credited back
    rewritten_events: int = 0
    per_user: list[UserLine] = []
    elapsed_s: float | None = None
    error: str | None = None


_decoder = json_bodies.decoder(RunIn)
_OUT = json_bodies.schema(RunOut)


@router.post(
    "/v1/rebilling/runs",
    summary="Start a rebilling run for the key's tenant (a dry run unless dry_run is false)",
    status_code=202,
    responses={
        202: json_bodies.content("The run, queued; poll GET /v1/rebilling/runs/{run_id}", _OUT),
        **json_bodies.errors(401, 403, 409, 422, descriptions={
            409: "A run of this tenant is queued or running (`replay_running`), or the Idempotency-Key was used for a "
                 "different request (`idempotency_conflict`); the same key and body replay the first answer",
            422: "A field is invalid or a guard rail refuses the range; `field` names it",
        }),
    },
    openapi_extra=json_bodies.request_body(json_bodies.schema(RunIn)),
)
async def start(request: Request, key: str | None = Header(None, alias="Idempotency-Key",
                                                           description=idempotency.KEY_HEADER_DOC),
                customer_id: str = Depends(tenant)):
    body = await json_bodies.read(request, _decoder)
    json_bodies.check_customer(body.customer_id, customer_id)
    for field, at in (("from", body.start), ("to", body.end)):
        json_bodies.effective_from(at, field)  # the shared check: 422 naming the field without a timezone
    replay = ReplayRequest(customer_id, body.start, body.end, tuple(body.user_ids), body.burn_table_version,
                           apply=not body.dry_run, rebuild_analytics=body.rebuild_analytics, force=body.force)
    problems = replay.problems(request.app.state.settings)
    if problems:
        field, reason = problems[0]
        raise ApiError(422, "invalid_request", "; ".join(f"{f}: {r}" for f, r in problems), field)
    run = runs.Run(runs.new_run_id(), customer_id, sorted(set(body.user_ids)), body.start, body.end,
                   body.burn_table_version, "apply" if replay.apply else "dry_run", body.rebuild_analytics, "queued",
                   "api")
    def create(conn):
        busy = runs.create_unless_busy(conn, run)
        if busy is not None:
            raise ApiError(409, "replay_running", f"run {busy} of this tenant is queued or running: one at a time")
        return 202, orjson.dumps(msgspec.to_builtins(_out(run))), run

    response, created = await idempotency.respond_once(request, customer_id, key, "POST /v1/rebilling/runs", (body,),
                                                       create)
    if created is not None:
        _launch(replay, run.run_id)  # after the commit: the process reads the run's record
    return response


@router.get(
    "/v1/rebilling/runs/{run_id}",
    summary="A rebilling run of the key's tenant: status, totals, per-user lines",
    responses={200: json_bodies.content("The run", _OUT), **json_bodies.errors(401, 404)},
)
async def read(request: Request, run_id: str, customer_id: str = Depends(tenant)):
    found = await in_db(request, runs.get, run_id, customer_id)
    if found is None:
        raise ApiError(404, "not_found", f"no rebilling run {run_id!r} for this tenant", "run_id")
    return json_bodies.respond(_out(found))


def _launch(replay: ReplayRequest, run_id: str) -> None:
    """`openmonetize replay --run-id` in a process of its own; a thread reaps it when it ends."""
    args = [sys.executable, "-m", "openmonetize", "replay", "--customer", replay.customer_id,
            "--from", replay.start.isoformat(), "--to", replay.end.isoformat(), "--run-id", run_id, "--no-progress",
            "--yes" if replay.apply else "--dry-run"]
    for user_id in replay.user_ids:
        args += ["--user", user_id]
    if replay.burn_table_version is not None:
        args += ["--burn-table-version", str(replay.burn_table_version)]
    if replay.rebuild_analytics:
        args.append("--rebuild-analytics")
    if replay.force:
        args.append("--force")
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    threading.Thread(target=process.wait, daemon=True, name=f"replay-{run_id}").start()


def _out(run: runs.Run) -> RunOut:
    return RunOut(
        run.run_id, run.customer_id, run.mode, run.status, list(run.user_ids), run.range_from, run.range_to,
        run.burn_table_version, run.rebuild_analytics, run.requested_by, run.created_at, run.started_at,
        run.finished_at, run.events, run.duplicates, run.conflicts, run.uncharged, run.unrateable, run.adjusted,
        decimal_text(run.charged), decimal_text(run.rerated), decimal_text(run.difference), run.rewritten_events,
        [UserLine(u["user_id"], u["events"], u["duplicates"], u["conflicts"], u["uncharged"], u["unrateable"],
                  u["adjusted"], _text(u["charged"]), _text(u["rerated"]), _text(u["difference"]))
         for u in run.per_user],
        run.elapsed_s, run.error)


def _text(value) -> str:
    return decimal_text(Decimal(str(value)))
