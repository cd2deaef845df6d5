"""The whole pipeline under failure: usage events in, balances out, exact to the last credit.

Each test runs an `IsolatedPipeline` (own topics, consumer group and worker processes) and
compares every wallet's final balance with what the events' credits say it must be, computed
independently with the same rating function on the events the generator produced.
"""

from __future__ import annotations

import shutil
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

from openmonetize import wallet_ids
from openmonetize.billing.money import ZERO, quantize
from openmonetize.billing.rating import RateParams, rate
from openmonetize.reconcile import check
from producers.loadgen import EventGenerator
from tests.conftest import eventually
from tests.integration.isolated import IsolatedPipeline

RULES = {"default": {"input_tokens": "1", "output_tokens": "4", "cached_input_tokens": "0.5", "image": "40",
                     "unit": "0.3", "per_unit": 1000}}
CUSTOMERS = ["cus_f1", "cus_f2"]
FUNDED_USERS = [f"user-{i}" for i in range(5)]  # everyone else is charged to the customer's wallet
PURCHASE = Decimal("1000")


class Ledgerbook:
    """What the pipeline must end at: each distinct event rated once and routed, plus purchases."""

    def __init__(self, pipeline: IsolatedPipeline):
        self.pipeline = pipeline
        self.tables = {customer: pipeline.burn_table(customer, RULES) for customer in CUSTOMERS}
        self.expected: dict[str, Decimal] = Counter()
        self.events: set[str] = set()

    def fund(self) -> None:
        for customer in CUSTOMERS:
            for user in FUNDED_USERS:
                wallet = wallet_ids.user_wallet(customer, user)
                self.pipeline.command(wallet, customer, "purchase", str(PURCHASE))
                self.expected[wallet] += PURCHASE
        self.pipeline.flush()

    def send(self, events: list[dict]) -> None:
        for fields in events:
            record = self.pipeline.event(fields)
            if record["event_id"] in self.events:
                continue  # a client retry: must not be charged again
            self.events.add(record["event_id"])
            customer = record["customer_id"]
            credits = rate(RateParams.from_record(record), self.tables[customer], None, Decimal("0.01")).credits
            user = record["user_id"]
            wallet = (wallet_ids.user_wallet(customer, user) if user in FUNDED_USERS
                      else wallet_ids.customer_wallet(customer))
            self.expected[wallet] -= credits
        self.pipeline.flush()

    def settled(self) -> dict:
        balances = self.pipeline.balances()
        off = {w: (balances.get(w, {}).get("balance"), quantize(e)) for w, e in self.expected.items()
               if balances.get(w, {}).get("balance") != quantize(e)}
        assert not off, f"{len(off)} of {len(self.expected)} wallets off (got, expected), e.g. {list(off.items())[:3]}"
        return balances

    def check(self, timeout_s: float = 180) -> None:
        balances = eventually(self.settled, timeout_s=timeout_s, interval_s=1, what="every wallet at its exact balance")
        ledger = self.pipeline.ledger()
        debits = Counter(e["event_id"] for e in ledger.values() if e["kind"] == "usage_debit")
        assert set(debits) == self.events and set(debits.values()) == {1}, "each event charged exactly once"
        assert check({w: b["balance"] for w, b in balances.items()}, ledger.values()) == []  # `openmonetize reconcile`
        assert self.pipeline.read_all(self.pipeline.topics.usage_dlq.name) == []

    def wait_for_progress(self, since: int) -> None:
        eventually(lambda: self.pipeline.ledger_size() > since, timeout_s=90, interval_s=0.02,
                   what="the worker to charge events")


@pytest.fixture
def pipeline(settings, tmp_path):
    p = IsolatedPipeline(settings, tmp_path)
    yield p
    p.stop()


def chunks(generator: EventGenerator, count: int, size: int):
    for _ in range(count):
        yield [next(generator) for _ in range(size)]


def funded(pipeline: IsolatedPipeline, book: Ledgerbook) -> None:
    book.fund()
    eventually(lambda: len(pipeline.balances()) == len(CUSTOMERS) * len(FUNDED_USERS), timeout_s=90,
               what="the purchases applied (routing reads them)")


@pytest.mark.chaos  # 70 s: `make chaos-tests`; the suite kills the worker under load in test_chaos_short
def test_kill_9_five_times_while_20000_events_with_5_percent_retries_flow(pipeline):
    book = Ledgerbook(pipeline)
    pipeline.start_worker()
    funded(pipeline, book)
    generator = EventGenerator(seed=11, tenants=CUSTOMERS, users=40, duplicate_share=0.05)
    for events in chunks(generator, 5, 4000):
        before = pipeline.ledger_size()
        book.send(events)
        book.wait_for_progress(before)  # mid-stream: part of this chunk is charged, part is not
        pipeline.kill_worker()
        pipeline.start_worker()
    book.check()
    assert len(book.events) < 20_000  # the generator's retries were in the stream


def test_two_workers_one_leaves_and_comes_back_and_one_is_killed(pipeline):
    book = Ledgerbook(pipeline)
    pipeline.start_worker("a")
    pipeline.start_worker("b")
    funded(pipeline, book)
    generator = EventGenerator(seed=12, tenants=CUSTOMERS, users=40, duplicate_share=0.05)
    steps = [lambda: pipeline.stop_worker("b"), lambda: pipeline.start_worker("b"), lambda: pipeline.kill_worker("a"),
             lambda: pipeline.start_worker("a")]
    for events, step in zip(chunks(generator, 4, 2500), steps):
        before = pipeline.ledger_size()
        book.send(events)
        book.wait_for_progress(before)
        step()  # a rebalance mid-stream
    book.check()


def test_a_worker_that_lost_its_local_tables_drops_the_retries_of_what_it_charged_before(pipeline):
    """The dedupe entries reach the changelog packed (stream_processors/changelog_packs.py): a
    worker restarted without its local store rebuilds them from the changelog alone, so client
    retries of the events it charged before are dropped, not charged again."""
    book = Ledgerbook(pipeline)
    pipeline.start_worker()
    funded(pipeline, book)
    generator = EventGenerator(seed=13, tenants=CUSTOMERS, users=40)
    charged, fresh = next(chunks(generator, 1, 3000)), next(chunks(generator, 1, 500))
    book.send(charged)
    book.check()
    pipeline.stop_worker()
    shutil.rmtree(Path(pipeline.env["STACK_DIR"]) / "tables")  # the RocksDB stores, with every dedupe entry
    pipeline.start_worker()
    book.send(charged)  # each one a client retry now
    book.send(fresh)  # behind the retries on their partitions: once these are charged, the retries were read
    book.check()
    assert len(book.events) == 3500


def test_a_burst_of_commands_and_events_on_one_wallet_interleaved(pipeline):
    book = Ledgerbook(pipeline)
    pipeline.start_worker()
    customer, user = CUSTOMERS[0], FUNDED_USERS[0]
    wallet = wallet_ids.user_wallet(customer, user)
    book.fund()
    eventually(lambda: wallet in pipeline.balances(), what="the wallet to exist")
    generator = EventGenerator(seed=13, tenants=[customer], users=1, duplicate_share=0.1)
    for i in range(40):
        events = [{**next(generator), "user_id": user} for _ in range(10)]
        book.send(events)
        amount = Decimal(i % 7 + 1) / 4
        kind = "purchase" if i % 3 else "consume"
        pipeline.command(wallet, customer, kind, str(amount))
        book.expected[wallet] += amount if kind == "purchase" else -amount
    pipeline.flush()
    book.check(timeout_s=90)
    assert book.expected[wallet] != ZERO
