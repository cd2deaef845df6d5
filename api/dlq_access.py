"""A tenant's parked records (usage.dlq), for the dashboard's DLQ page and `GET /v1/dlq`: reads
and retries through the code of `openmonetize dlq` (openmonetize/dlq/ and openmonetize/dlq_views.py),
restricted to one tenant: a listing selects the tenant's records only, each with what fixes its
reason (`remedy`), and a retry re-reads each id it is given and refuses one that is not the
tenant's (as if it did not exist). Kafka and Postgres calls block: they run in a thread."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

from fastapi import Request

from openmonetize.dlq.entries import Selection
from openmonetize.dlq.ids import parse_ids
from openmonetize.dlq.kafka_access import DlqError
from openmonetize.dlq.redrive import Redriver, plan
from openmonetize.dlq.retry_rules import RETRY
from openmonetize.dlq_views import entry_json, retry_outcome, session
from schemas.dlq_reasons import REMEDIES

MAX_RETRIES = 3  # `openmonetize dlq retry`'s default --max-retries
MAX_SHOWN = 200
SINCE = timedelta(days=7)


async def listed(request: Request, customer_id: str, reasons: frozenset[str] = frozenset(),
                 limit: int = MAX_SHOWN) -> tuple[list[dict], int]:
    """The tenant's DLQ records of the last 7 days (of `reasons`, when given), newest first (at
    most `limit`), each with its `remedy`, and how many matched."""
    settings = request.app.state.settings
    since = datetime.now(timezone.utc) - SINCE

    def read() -> tuple[list[dict], int]:
        selection = Selection(reasons=reasons, customer=customer_id, since=since)
        with session(settings) as reader:
            found = [e for e in reader.scan(since) if selection.matches(e)]
        found.sort(key=lambda e: e.sort_key, reverse=True)
        shown = [entry_json(e) for e in found[:limit]]
        for entry in shown:
            entry["remedy"] = REMEDIES.get(entry.get("reason"), "")
        return shown, len(found)

    return await asyncio.to_thread(read)


async def retry(request: Request, customer_id: str, ids: list[str]) -> list[dict]:
    """Re-drive the given DLQ records of the tenant; one outcome per id (`failed` for an id that
    is not the tenant's, exactly as for one that does not exist)."""
    settings = request.app.state.settings

    def run() -> list[dict]:
        try:
            wanted = parse_ids(ids)
        except (DlqError, ValueError) as exc:  # a malformed id (the dashboard's form takes any text)
            return [{"id": ", ".join(ids), "outcome": "failed", "why": str(exc)}]
        outcomes, entries = [], []
        with session(settings) as reader:
            for dlq_id, found in reader.fetch_many(wanted).items():
                if isinstance(found, DlqError) or found.get("customer_id") != customer_id:
                    outcomes.append({"id": str(dlq_id), "outcome": "failed", "why": "no such DLQ record for this tenant"})
                else:
                    entries.append(found)
            planned = plan(reader, entries, MAX_RETRIES)
        if any(p.decision.action == RETRY for p in planned):
            redriver = Redriver(settings)
            try:
                redriver.send(planned)
            finally:
                redriver.close()
        return [retry_outcome(p, dry_run=False) for p in planned] + outcomes

    return await asyncio.to_thread(run)
