"""The sandbox's journey of one usage event through the real pipeline, each stage timed by
watching the real source, with a deadline:

  edge     POST /v1/events/ingest (in process) answered 202: Kafka acknowledged it
  kafka    the record read back from usage.events (partition, offset, broker timestamp)
  rated    the worker's record for it on usage.rated
  wallet   the API's wallet.balances view receives the record that applied it (the wait of the
           credits routes' `?wait=true`): the balance before and after
  clickhouse  the ClickHouse sink landed it in usage_events
  ledger   the ledger sink wrote its entry to Postgres (read through GET .../ledger)

Kafka is watched from the end offsets taken BEFORE the event is posted, by a consumer of its own
with no group (assign, never commit), matching the record by its event id.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from confluent_kafka import OFFSET_END, Consumer, TopicPartition
from fastapi import Request

from api.catalog_state import catalog_of
from api.dashboard import internal, reads
from api.dashboard.sessions import Session
from api.wallet_access import balances_of, wallet_exists
from openmonetize import wallet_ids
from openmonetize.catalog.json_codec import decimal_text
from openmonetize.wallet_balances import Watch
from schemas.topic_codecs import reader_codec
from schemas.topics import topics

STAGES = ("edge", "kafka", "rated", "wallet", "clickhouse", "ledger")
DLQ = "dlq"  # not a stage: the worker refused the event (no rate, unfunded, ...), which ends the journey
DEADLINE_S = 30.0
POLL_S = 0.1


@dataclass
class Stage:
    stage: str
    ok: bool
    ms: float  # since the request was sent
    detail: dict


class KafkaWatch:
    """usage.events and usage.rated from their current ends; reports the first record of each
    that carries the event id."""

    def __init__(self, request: Request):
        settings = request.app.state.settings
        spec = topics(settings)
        self.names = {spec.usage_events.name: "kafka", spec.usage_rated.name: "rated", spec.usage_dlq.name: DLQ}
        self.dlq_codec = reader_codec(request.app.state.codec_registry, spec.usage_dlq)
        self.consumer = Consumer({
            "bootstrap.servers": settings.kafka_bootstrap, "group.id": "om-dashboard-sandbox",
            "enable.auto.commit": False, "fetch.wait.max.ms": 20, "isolation.level": "read_committed",
        })
        assigned = []
        for topic in self.names:
            metadata = self.consumer.list_topics(topic, timeout=10).topics[topic]
            for partition in metadata.partitions:
                _, high = self.consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
                assigned.append(TopicPartition(topic, partition, high if high >= 0 else OFFSET_END))
        self.consumer.assign(assigned)

    def run(self, event_id: str, started: float, sent_wall_ms: float, deadline: float,
            found: Callable[[Stage], None], stop: threading.Event) -> None:
        needle, wanted = event_id.encode(), dict(self.names)
        try:
            while wanted and time.monotonic() < deadline and not stop.is_set():
                for message in self.consumer.consume(100, timeout=0.1):
                    if message.error() is not None or message.topic() not in wanted:
                        continue
                    if needle in (message.value() or b""):
                        stage = wanted.pop(message.topic())
                        at_ms = message.timestamp()[1]
                        if stage == DLQ:  # no usage.rated record will come
                            wanted = {t: s for t, s in wanted.items() if s != "rated"}
                            found(Stage(DLQ, False, _ms(started), self._refusal(message)))
                            continue
                        found(Stage(stage, True, _ms(started), {
                            "topic": message.topic(), "partition": message.partition(), "offset": message.offset(),
                            "broker_timestamp_ms": at_ms,
                            # when the broker stamped it, on the wall clock, from when the request was sent
                            "broker_ms": round(at_ms - sent_wall_ms, 1),
                        }))
        finally:
            self.consumer.close()

    def _refusal(self, message) -> dict:
        where = {"topic": message.topic(), "partition": message.partition(), "offset": message.offset(),
                 "dlq_id": f"{message.partition()}:{message.offset()}"}
        try:
            record = self.dlq_codec.decode(message.value())
        except Exception as exc:  # noqa: BLE001 - the refusal is still shown, without its reason
            return {**where, "reason": f"sent to the DLQ (record not decoded: {exc})"}
        return {**where, "reason": f"sent to the DLQ: {record['reason']} ({record['detail']})", "stage": record["stage"]}


async def travel(request: Request, session: Session, event: dict) -> AsyncIterator[Stage]:
    """Post `event` and yield each stage as it is seen; stages not seen by the deadline are
    yielded with ok=False."""
    customer_id, event_id = session.customer_id, event["event_id"]
    # The wallet the usage agent will charge: the same routing rule (openmonetize.wallet_ids.route)
    # over the tenant's routing order and the wallets that exist (wallet_access.wallet_exists).
    order = catalog_of(request).tenant(customer_id).routing_order
    balances = balances_of(request)
    wallet_id = wallet_ids.route(customer_id, event["user_id"], event.get("team_id"), order,
                                 wallet_exists(request, balances))
    before = reads.wallet(request, customer_id, wallet_id)
    watch = await asyncio.to_thread(KafkaWatch, request)
    watch_wallet = balances.watch(wallet_id, event_id)  # before posting, so its record cannot be missed
    queue: asyncio.Queue[Stage] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    stop = threading.Event()
    started, sent_wall_ms = time.monotonic(), time.time() * 1000
    deadline = started + DEADLINE_S
    answer = await internal.call(request, session, "POST", "/v1/events/ingest", json={"events": [event]})
    accepted = answer.ok and answer.body.get("accepted") == 1
    detail = {"status": answer.status, "body": answer.body}
    if not accepted:
        stop.set()
        watch.consumer.close()
        watch_wallet.close()
        yield Stage("edge", False, _ms(started), detail)
        return
    yield Stage("edge", True, _ms(started), detail)
    kafka = loop.run_in_executor(None, watch.run, event_id, started, sent_wall_ms, deadline,
                                 lambda s: loop.call_soon_threadsafe(queue.put_nowait, s), stop)
    pollers = [
        asyncio.create_task(_wallet(watch_wallet, before, started, deadline, queue)),
        asyncio.create_task(_poll(queue, "clickhouse", started, deadline, lambda: _clickhouse(request, customer_id,
                                                                                             event_id))),
        asyncio.create_task(_poll(queue, "ledger", started, deadline, lambda: _ledger(request, session, wallet_id,
                                                                                     event_id))),
    ]
    seen, missing = {"edge"}, None
    try:
        while len(seen) < len(STAGES) and not (missing and "kafka" in seen):
            try:
                stage = await asyncio.wait_for(queue.get(), max(deadline - time.monotonic(), 0.01))
            except asyncio.TimeoutError:
                break
            if stage.stage == DLQ:  # the worker refused it: nothing further will happen to it
                seen.add("rated")
                missing = {"reason": "not reached: the event went to the DLQ"}
                yield Stage("rated", False, stage.ms, stage.detail)
                continue
            seen.add(stage.stage)
            yield stage
        for name in STAGES:
            if name not in seen:
                yield Stage(name, False, _ms(started), missing or {"reason": f"not seen within {DEADLINE_S:.0f} s"})
    finally:
        stop.set()
        watch_wallet.close()
        for task in pollers:
            task.cancel()
        await asyncio.gather(kafka, *pollers, return_exceptions=True)


async def _poll(queue: asyncio.Queue, name: str, started: float, deadline: float, probe) -> None:
    while time.monotonic() < deadline:
        detail = await probe()
        if detail is not None:
            queue.put_nowait(Stage(name, True, _ms(started), detail))
            return
        await asyncio.sleep(POLL_S)


async def _wallet(watch: Watch, before, started: float, deadline: float, queue: asyncio.Queue) -> None:
    """The first wallet.balances record whose applied ids name the event: the credits routes'
    own wait (`?wait=true`), resolved by the view's thread as the record arrives, no polling."""
    applied = await watch.applied(max(deadline - time.monotonic(), 0.01))
    if applied is not None:
        queue.put_nowait(Stage("wallet", True, _ms(started), {
            "wallet_id": watch.wallet_id, "balance_before": decimal_text(before.balance),
            "balance_after": decimal_text(applied.balance), "available": decimal_text(applied.available),
            "version": applied.version}))


_LANDED_SQL = "SELECT credits, usd_cost, kafka_partition, kafka_offset FROM {db}.usage_events FINAL " \
              "WHERE customer_id = {{c:String}} AND event_id = {{e:String}} LIMIT 1"


async def _clickhouse(request: Request, customer_id: str, event_id: str) -> dict | None:
    clickhouse = request.app.state.clickhouse
    result = await clickhouse.query(_LANDED_SQL.format(db=clickhouse.database), {"c": customer_id, "e": event_id})
    rows = list(result.named_results())
    if not rows:
        return None
    row = rows[0]
    return {"credits": decimal_text(row["credits"]), "usd_cost": decimal_text(row["usd_cost"]),
            "table": f"{clickhouse.database}.usage_events"}


async def _ledger(request: Request, session: Session, wallet_id: str, event_id: str) -> dict | None:
    answer = await internal.call(request, session, "GET", f"/v1/customers/{session.customer_id}/ledger",
                                 params={"wallet_id": wallet_id, "limit": "50"})
    for entry in answer.body.get("entries", []) if answer.ok else []:
        if entry.get("event_id") == event_id:
            return {"entry_id": entry["entry_id"], "amount": entry["amount"], "balance_after": entry["balance_after"]}
    return None


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)
