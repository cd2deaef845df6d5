"""The plan scheduler inside each API process: every PLANS_SCHEDULER_INTERVAL_S it issues the
grants that are due (openmonetize/plans/scheduler.py, in one API process at a time under a
Postgres advisory lock), and a new subscription's started periods are granted at once
(`grant_due_now`). The plans routes (api/routes/plans.py) keep only the HTTP side."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from datetime import datetime, timezone

from fastapi import Request

from api.catalog_state import in_db
from openmonetize.logs import get_logger
from openmonetize.plans import scheduler
from openmonetize.stores import plans as store
from openmonetize.stores.plans import Subscription

log = get_logger(__name__)


@asynccontextmanager
async def lifespan(app):
    app.state.plan_sender = None
    scheduling = asyncio.create_task(_schedule(app))
    try:
        yield
    finally:
        scheduling.cancel()
        if app.state.plan_sender is not None:
            await asyncio.to_thread(app.state.plan_sender.close)


def _sender(app) -> scheduler.KafkaSender | None:
    if app.state.plan_sender is None:
        codecs = getattr(app.state, "wallet_codecs", None)
        if codecs is None:
            return None  # the wallet command schema is not registered yet
        settings = app.state.settings
        app.state.plan_sender = scheduler.KafkaSender(settings.kafka_bootstrap, codecs.commands_topic,
                                                      codecs.command.encode, codecs.directory_topic,
                                                      codecs.directory_entry.encode,
                                                      settings.kafka_producer_timeout_ms / 1000)
    return app.state.plan_sender


async def grant_due_now(request: Request, found: Subscription) -> Subscription | None:
    """Issue the periods of a new subscription that have started; best effort (the scheduler
    catches up on what fails here). The subscription as it is now, or None."""
    send = _sender(request.app)
    if send is None:
        return None
    sid, caller = found.record.subscription_id, found.record.customer_id

    def work(conn):
        now = datetime.now(timezone.utc)
        while scheduler.deal_with_one(conn, sid, send, now, scheduler.Summary()):
            pass
        return store.subscription(conn, caller, sid)

    try:
        return await in_db(request, work)
    except Exception as exc:  # noqa: BLE001 - Kafka did not acknowledge: the scheduler issues it later
        log.warning("plan_first_grant_failed", subscription_id=sid, error=str(exc))
        return None


async def _schedule(app) -> None:
    """Every PLANS_SCHEDULER_INTERVAL_S: the scheduler, in one API process at a time (advisory lock)."""
    settings = app.state.settings
    interval = settings.plans_scheduler_interval_s
    if interval <= 0:
        return
    while True:
        await asyncio.sleep(interval)
        send = _sender(app)
        if send is None:
            continue
        try:
            await asyncio.to_thread(scheduler.run_locked, settings.database_url, send, datetime.now(timezone.utc))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - Postgres or Kafka down: the next round catches up
            log.warning("plans_scheduler_failed", error=str(exc))
