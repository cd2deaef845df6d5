"""One usage event per proxied call, sent after the response (or what was streamed of it)
through the ingest step HTTP ingest uses (api/intake.py `Intake.accept`, source `proxy`), in
the background: the client never waits for Kafka. A call whose event Kafka did not take is
logged with its figures (`proxy_usage_not_billed`) and counted, never dropped silently."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime

from prometheus_client import Counter

from api.errors import ApiError
from api.intake import Intake
from api.proxy.calls import Call, Usage
from api.proxy.identity import Identity
from openmonetize.logs import get_logger
from schemas.usage_event import UsageEventIn
from schemas.usage_units import units_of

log = get_logger(__name__)

EVENTS = Counter(
    "openmonetize_proxy_usage_events_total",
    "Usage events of proxied calls: accepted (Kafka has it), rejected (the event contract refused it), "
    "failed (Kafka did not acknowledge), unmetered (a successful response without usage)",
    ["provider", "outcome"],
)


def usage_event(who: Identity, call: Call, usage: Usage, started_at: datetime, upstream_request_id: str | None) -> UsageEventIn:
    metadata = {"endpoint": call.endpoint, **usage.details}
    if upstream_request_id:
        metadata["upstream_request_id"] = upstream_request_id[:256]
    return UsageEventIn(
        event_id="px_" + uuid.uuid4().hex, user_id=who.user_id, event_type=usage.event_type, feature_id=who.feature_id,
        timestamp=started_at, team_id=who.team_id, provider=call.provider, model=call.model, metadata=metadata,
        **units_of(usage),
    )


class Billing:
    def __init__(self, intake: Intake):
        self.intake = intake
        self.sending: set[asyncio.Task] = set()

    def bill(self, who: Identity, call: Call, started_at: datetime, upstream_request_id: str | None) -> None:
        """Send the call's usage event in the background (nothing when the meter read no usage)."""
        try:
            usage = call.meter.usage()
        except Exception as exc:  # noqa: BLE001 - a response shape we do not know: say so, keep serving
            usage = None
            log.error("proxy_usage_unreadable", provider=call.provider, endpoint=call.endpoint, model=call.model,
                      customer_id=who.customer_id, error=repr(exc)[:300])
        if usage is None:
            EVENTS.labels(call.provider, "unmetered").inc()
            return
        event = usage_event(who, call, usage, started_at, upstream_request_id)
        task = asyncio.get_running_loop().create_task(self._send(who, call, event))
        self.sending.add(task)
        task.add_done_callback(self.sending.discard)

    async def _send(self, who: Identity, call: Call, event: UsageEventIn) -> None:
        try:
            response = await self.intake.accept([event], who.customer_id, "proxy")
        except ApiError as exc:
            EVENTS.labels(call.provider, "failed").inc()
            log.error("proxy_usage_not_billed", reason=exc.message[:300], **_figures(who, event))
            return
        if response.status_code != 202:
            EVENTS.labels(call.provider, "rejected").inc()
            log.error("proxy_usage_not_billed", reason=bytes(response.body).decode()[:300], **_figures(who, event))
            return
        EVENTS.labels(call.provider, "accepted").inc()
        log.debug("proxy_usage_billed", **_figures(who, event))

    async def drain(self, timeout_s: float) -> None:
        """At shutdown: let the events in flight reach Kafka."""
        if self.sending:
            await asyncio.wait(list(self.sending), timeout=timeout_s)


def _figures(who: Identity, event: UsageEventIn) -> dict:
    return {
        "event_id": event.event_id, "customer_id": who.customer_id, "user_id": who.user_id, "provider": event.provider,
        "model": event.model, "event_type": event.event_type, "input_tokens": event.input_tokens,
        "output_tokens": event.output_tokens, "cached_input_tokens": event.cached_input_tokens,
        "image_count": event.image_count, "metadata": event.metadata,
    }
