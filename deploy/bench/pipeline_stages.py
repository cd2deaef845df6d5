"""Each per-event step of the stream pipeline alone, without Kafka: µs of CPU per event.

The end-to-end figure (`make bench-pipeline`) takes a 15-minute drain and mixes our code with
Kafka clients and Faust; this one takes seconds and shows where our own Python goes, step by
step, on the same realistic events as the pipeline bench (producers/loadgen.py's generator,
rated with the pipeline bench's burn table and the bundled provider prices):

    usage agent:  decode → dedupe key + body hash → rate (catalog.rate_event) → the rated record
                  (the event's bytes + the encoded rating: stream_processors.codecs.RatedFromEvent)
    wallet agent: decode the rated record (only the fields it reads: wallet_step.DEBIT_FIELDS)
                  → apply to the wallet (wallet_step.apply_records, one OpenWallet per batch)
                  → encode ledger entry and balance → the wallet state's changelog value
                  (the rated usage goes on as the bytes it came in: nothing to encode)

    python -m deploy.bench.pipeline_stages [--events 20000]

Figures are per event (process CPU time / events), the median of --runs passes; the budget a
20,000 events/s pipeline on 2 cores leaves is 100 µs per event for everything, Kafka included.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from deploy.bench.pipeline import RULES
from openmonetize.billing import prices
from openmonetize.billing.burn_tables import BurnTable, parse_rules
from openmonetize.billing.rating import RateParams
from openmonetize.catalog.index import CatalogIndex
from openmonetize.catalog.json_codec import key_of
from openmonetize.catalog.records import BurnTableRecord, PriceRecord, TenantSettings
from openmonetize.cycle_collector import collect_cycles_after
from openmonetize.settings import get_settings
from openmonetize.usage_step import Inputs, Window, dedupe_key, seen_value, usage_step
from producers.loadgen import EventGenerator
from schemas.codec import AvroCodec
from schemas.topic_codecs import codec_with_id
from schemas.usage_event import EventLimits, convert_event, to_record
from stream_processors import wallet_state_codec
from stream_processors.codecs import RatedFromEvent
from stream_processors.wallet_step import DEBIT_FIELDS, apply_records, balance_record, ledger_record

TENANTS = ["cus_bench_a", "cus_bench_b", "cus_bench_c"]


def codecs() -> dict[str, AvroCodec]:
    return {
        "usage": codec_with_id("usage_event.avsc", 1),
        "rated": codec_with_id("rated_usage.avsc", 2),
        "ledger": codec_with_id("ledger_entry.avsc", 3),
        "balance": codec_with_id("wallet_balance.avsc", 4),
    }


def catalog() -> CatalogIndex:
    index = CatalogIndex()
    for price in prices.snapshot(datetime.now(timezone.utc).date(), "bench"):
        record = PriceRecord(price)
        index.apply(key_of(record), record)
    since = datetime.now(timezone.utc) - timedelta(days=40)
    for tenant in TENANTS:
        index.apply(f"tenant:{tenant}", TenantSettings(tenant))
        table = BurnTableRecord(BurnTable("bt_bench", tenant, "bench", 1, since, parse_rules(RULES)), since, since)
        index.apply(key_of(table), table)
    return index


def events(count: int) -> list[bytes]:
    generator = EventGenerator(seed=7, tenants=TENANTS, users=1000)
    codec, now, limits = codecs()["usage"], datetime.now(timezone.utc), EventLimits.from_settings(get_settings())
    out = []
    while len(out) < count:
        fields = generator.next()
        record = to_record(convert_event(fields), customer_id=fields["customer_id"], source="kafka", received_at=now,
                           limits=limits)
        out.append(codec.encode(record))
    return out


def cpu_us_per_item(work: Callable[[], int]) -> float:
    started = time.process_time()
    done = work()
    return (time.process_time() - started) / done * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    opts = parser.parse_args(argv)
    collect_cycles_after(get_settings().gc_threshold)  # as the worker runs them (openmonetize/cycle_collector.py)

    c, index = codecs(), catalog()
    raw = events(opts.events)
    now = datetime.now(timezone.utc)
    decoded = [c["usage"].decode(v) for v in raw]
    rated_results = [index.rate_event(r["customer_id"], RateParams.from_record(r)).result for r in decoded]
    # the rating's fields, as the usage agent adds them to the event (UsageAgent._debit)
    ratings = [{"wallet_id": f"w:{r['customer_id']}:customer", "credits": x.credits, "usd_cost": x.usd_cost,
                "revenue_usd": x.revenue_usd, "margin_usd": x.margin_usd, "burn_table_id": x.burn_table_id,
                "burn_table_version": x.burn_table_version, "price_version": x.price_version, "rated_at": now,
                "revision": 0, "source_partition": 0, "source_offset": i}
               for i, (r, x) in enumerate(zip(decoded, rated_results))]
    rated = [{**r, **t} for r, t in zip(decoded, ratings)]
    rated_raw = [c["rated"].encode(r) for r in rated]
    debit = c["rated"].projection(DEBIT_FIELDS)  # what the wallet agent decodes (codecs.Codecs.debit)
    per_wallet: dict[str, list[tuple[str, dict]]] = {}
    for r in map(debit.decode, rated_raw):
        per_wallet.setdefault(r["wallet_id"], []).append(("debit", r))

    def apply_all() -> list:
        return [apply_records(None, wallet_id, records, policy="allow_overdraft", now=now)
                for wallet_id, records in per_wallet.items()]

    results = apply_all()
    rated_from_event = RatedFromEvent(c["usage"], c["rated"], c["rated"].cached_fields)
    entries = [e for result in results for e in result.ledger]

    stages: list[tuple[str, Callable[[], int]]] = [
        ("usage: decode the event", lambda: len([c["usage"].decode(v) for v in raw])),
        ("usage: dedupe key + body hash", lambda: len([(dedupe_key(r["customer_id"], r["event_id"]), seen_value(r))
                                                       for r in decoded])),
        ("usage: rate (catalog.rate_event)", lambda: len([index.rate_event(r["customer_id"], RateParams.from_record(r))
                                                          for r in decoded])),
        ("usage: the rated record (event bytes + tail)", lambda: len([rated_from_event.encode(v, e, r)
                                                                       for v, e, r in zip(raw, decoded, ratings)])),
        ("wallet: decode the rated record (its fields)", lambda: len([debit.decode(v) for v in rated_raw])),
        ("wallet: apply (wallet_step)", lambda: len(apply_all() and rated)),
        ("wallet: encode ledger entries", lambda: len([c["ledger"].encode(ledger_record(e, now)) for e in entries])),
        ("wallet: encode balances (per wallet)", lambda: len([c["balance"].encode(balance_record(x.state, now, x.applied_ids[-10:]))
                                                              for x in results]) and len(rated)),
        ("wallet: state changelog value (per wallet)", lambda: len([wallet_state_codec.dumps(x.state) for x in results])
         and len(rated)),
    ]
    print(f"{opts.events:,} events, {len(per_wallet):,} wallets; CPU µs per event, median of {opts.runs} runs")
    total = 0.0
    for name, work in stages:
        figure = statistics.median(cpu_us_per_item(work) for _ in range(opts.runs))
        total += figure
        print(f"  {name:<45} {figure:8.1f}")
    print(f"  {'all of our per-event Python':<45} {total:8.1f}")
    # The usage agent's whole pure step (the first three stages above, and the window, the
    # dedupe lookup and routing around them), on a batch of WORKER_BATCH_SIZE records at a time.
    inputs = Inputs(index, lambda _wallet: False, lambda _partition, keys: [None] * len(keys))
    window = Window(timedelta(days=35), timedelta(minutes=5))
    size = get_settings().worker_batch_size

    def whole_step() -> int:
        for start in range(0, len(raw), size):
            usage_step(((0, v) for v in raw[start:start + size]), c["usage"].decode, inputs, window, now)
        return len(raw)

    figure = statistics.median(cpu_us_per_item(whole_step) for _ in range(opts.runs))
    print(f"  {'usage_step as a whole (decode to route)':<45} {figure:8.1f}")


if __name__ == "__main__":
    main()
