"""The plans scheduler: issue each subscription period's grant, exactly once.

`run_due` finds the active subscriptions with a period started and not yet dealt with, and
deals with them one period at a time, each in its own Postgres transaction:

1. lock the subscription row if it is still due (`FOR UPDATE SKIP LOCKED`: a scheduler running
   at the same time skips what this one holds, and finds it no longer due afterwards);
2. send the period's grant commands to `wallet.commands` and wait for Kafka's acknowledgement;
   their ids derive from (tenant, subscription, period start) (openmonetize/plans/periods.py);
3. record the period in `plan_grants` and move the subscription to its next period; commit.

A crash or a Kafka failure between 2 and 3 rolls the transaction back: the next run sends the
same commands again, and the wallet agent, which remembers the ids of the commands it applied
(the last 200 per wallet), applies them once. A period whose every lot would already have
expired (the scheduler did not run for that long) is recorded as skipped, not granted.

It runs as `openmonetize plans run-due` and, every PLANS_SCHEDULER_INTERVAL_S, inside each API
process under a Postgres advisory lock (api/routes/plans.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal

import psycopg
from confluent_kafka import Producer
from prometheus_client import Counter

from openmonetize import wallet_directory
from openmonetize.kafka_clients import KEYED
from openmonetize.logs import get_logger
from openmonetize.plans import periods
from openmonetize.stores import plans as store
from schemas.wallet_command import wallet_command

log = get_logger(__name__)
SCHEDULER_LOCK_ID = 7_402_113_008  # the API processes' periodic run: one at a time
PERIODS = Counter("openmonetize_plan_periods_total",
                  "Subscription periods the plans scheduler dealt with in this process, by outcome (granted, skipped: "
                  "its credits would already have expired, failed: Kafka did not acknowledge, left due)", ["outcome"])


@dataclass
class Summary:
    subscriptions: int = 0  # due when the run started
    periods: int = 0  # periods dealt with (granted or skipped)
    granted: int = 0  # grant commands acknowledged by Kafka
    skipped: int = 0  # periods whose credits would already have expired
    credits: Decimal = Decimal(0)
    failed: list[str] = field(default_factory=list)  # subscriptions left due (Kafka did not acknowledge)

    def as_dict(self) -> dict:
        return {"subscriptions": self.subscriptions, "periods": self.periods, "granted": self.granted,
                "skipped": self.skipped, "credits": f"{self.credits.normalize():f}", "failed": self.failed}


class SendError(RuntimeError):
    """Kafka did not acknowledge every grant command."""


class KafkaSender:
    """Sends wallet commands (encoded by `encode`) keyed by wallet, each wallet's wallet.directory
    entry beside it (`directory_topic`, `encode_entry`: usage routing sees the wallet as soon as
    the grant is acknowledged), and waits for every ack."""

    def __init__(self, bootstrap: str, topic: str, encode: Callable[[dict], bytes], directory_topic: str,
                 encode_entry: Callable[[dict], bytes], timeout_s: float = 10.0):
        self.topic, self.encode, self.timeout_s = topic, encode, timeout_s
        self.directory_topic, self.encode_entry = directory_topic, encode_entry
        self._producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                                   "linger.ms": 1, "message.timeout.ms": int(timeout_s * 1000), **KEYED})

    def __call__(self, commands: Sequence[dict]) -> None:
        failed: list = []

        def delivered(err, _msg) -> None:
            if err is not None:
                failed.append(err)

        now = datetime.now(timezone.utc)
        for command in {c["wallet_id"]: c for c in commands}.values():
            self._producer.produce(self.directory_topic, self.encode_entry(wallet_directory.entry(command, now)),
                                   command["wallet_id"].encode(), on_delivery=delivered)
        for command in commands:
            self._producer.produce(self.topic, self.encode(command), command["wallet_id"].encode(), on_delivery=delivered)
        left = self._producer.flush(self.timeout_s + 1)
        if left or failed:
            raise SendError(f"{left + len(failed)} of {len(commands)} grant commands not acknowledged by Kafka "
                            f"({failed[0] if failed else 'timed out'})")

    def close(self) -> None:
        self._producer.flush(self.timeout_s)


def sender_for(settings) -> KafkaSender:
    """A sender with the wallet.commands codec registered in the codecs' registry, as the tools do."""
    from openmonetize.rebilling.codecs import ProcessRegistry
    from schemas.topic_codecs import writer_codec
    from schemas.topics import topics

    registry = ProcessRegistry(settings)
    specs = topics(settings)
    return KafkaSender(settings.kafka_bootstrap, specs.wallet_commands.name,
                       writer_codec(registry, specs.wallet_commands).encode,
                       specs.wallet_directory.name, writer_codec(registry, specs.wallet_directory).encode,
                       settings.kafka_producer_timeout_ms / 1000)


def grant_command(due: dict, k: int, lot: periods.Lot, requested_at: datetime) -> dict:
    """The wallet.commands record of one lot (schemas/avro/wallet_command.avsc)."""
    return wallet_command(
        lot.command_id, due["customer_id"], due["wallet_id"], "grant", lot.amount, requested_at,
        expires_at=lot.expires_at, priority=due["priority"], reason=f"plan {due['plan_id']} period {k}",
        metadata={"source": "plan", "plan_id": due["plan_id"], "subscription_id": due["subscription_id"],
                  "period": str(k)},
    )


def period_of(due: dict, k: int) -> tuple[datetime, datetime, datetime]:
    """(start, end, end of the next period) of period k."""
    at = [periods.period_start(due["starts_at"], due["period"], due["period_count"], i) for i in (k, k + 1, k + 2)]
    return at[0], at[1], at[2]


def deal_with_one(conn: psycopg.Connection, subscription_id: str, send: Callable[[Sequence[dict]], None],
                  now: datetime, summary: Summary, on_period: Callable[[dict], None] | None = None) -> bool:
    """Deal with the subscription's next due period, in one transaction; False: nothing was due
    (or another scheduler holds it)."""
    with conn.transaction():
        due = store.lock_due(conn, subscription_id, now)
        if due is None:
            return False
        k = due["periods_granted"]
        start, end, next_end = period_of(due, k)
        lots = periods.lots(due["customer_id"], subscription_id, due["credits"], due["rollover"], due["rollover_cap"],
                            start, end, next_end)
        live = [lot for lot in lots if lot.expires_at is None or lot.expires_at > now]
        if live:
            send([grant_command(due, k, lot, now) for lot in live])
        amount = sum((lot.amount for lot in live), Decimal(0))
        store.record_period(conn, due, k, start, end, [lot.command_id for lot in live], amount)
    summary.periods += 1
    PERIODS.labels("granted" if live else "skipped").inc()
    summary.granted += len(live)
    summary.skipped += 0 if live else 1
    summary.credits += amount
    event = {"subscription_id": subscription_id, "customer_id": due["customer_id"], "wallet_id": due["wallet_id"],
             "plan_id": due["plan_id"], "period": k, "period_start": start.isoformat(), "period_end": end.isoformat(),
             "credits": f"{amount.normalize():f}", "commands": [lot.command_id for lot in live],
             "outcome": "granted" if live else "skipped"}
    log.info("plan_period_granted" if live else "plan_period_skipped", **event)
    if on_period is not None:
        on_period(event)
    return True


def run_due(database_url: str, send: Callable[[Sequence[dict]], None], now: datetime, *,
            customer_id: str | None = None, on_period: Callable[[dict], None] | None = None) -> Summary:
    """Deal with every period due at `now` (catching up on several periods of a subscription)."""
    summary = Summary()
    started = time.monotonic()
    with psycopg.connect(database_url, connect_timeout=10) as conn:
        due_ids = store.due(conn, now, customer_id)
        conn.commit()
        summary.subscriptions = len(due_ids)
        for subscription_id in due_ids:
            try:
                while deal_with_one(conn, subscription_id, send, now, summary, on_period):
                    pass
            except SendError as exc:
                summary.failed.append(subscription_id)
                PERIODS.labels("failed").inc()
                log.warning("plan_grant_not_acknowledged", subscription_id=subscription_id, error=str(exc))
    idle = not (summary.subscriptions or summary.failed)  # the API's loop finds nothing due most minutes: quiet
    (log.debug if idle else log.info)("plans_run_due", elapsed_s=round(time.monotonic() - started, 3),
                                      now=now.isoformat(), **summary.as_dict())
    return summary


def run_locked(database_url: str, send: Callable[[Sequence[dict]], None], now: datetime) -> Summary | None:
    """`run_due` under a session advisory lock: None when another process is running it."""
    with psycopg.connect(database_url, autocommit=True, connect_timeout=10) as conn:
        if not conn.execute("SELECT pg_try_advisory_lock(%s)", (SCHEDULER_LOCK_ID,)).fetchone()[0]:
            return None
        try:
            return run_due(database_url, send, now)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (SCHEDULER_LOCK_ID,))
