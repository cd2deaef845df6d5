"""One partition's replay pass without Kafka: selection, dedupe, re-rating and the comparison
with what the ledger charged."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from openmonetize import wallet_ids
from openmonetize.billing.burn_tables import BurnTable, parse_rules
from openmonetize.catalog.index import CatalogIndex
from openmonetize.catalog.json_codec import key_of
from deploy.bench.pipeline import RULES
from openmonetize.billing.prices import ProviderPrice
from openmonetize.billing.rating import NoRate, RateParams
from openmonetize.catalog.records import BurnTableRecord, PriceRecord
from openmonetize.rebilling.rerate import (
    Adjustment,
    Charged,
    LedgerCharges,
    Rates,
    Rerater,
    Selection,
    UserTotals,
    row_decoder,
)
from openmonetize.usage_step import body_hash, copy_outcome
from producers.loadgen import EventGenerator
from schemas.codec import AvroCodec, schema_text
from schemas.usage_event import EventLimits, convert_event, to_record

NOW = datetime(2026, 11, 26, 12, tzinfo=timezone.utc)
LIMITS = EventLimits(timedelta(days=400), timedelta(days=400), 10**9, 10**6, Decimal(10**9), 50)
CODEC = AvroCodec(schema_text("usage_event.avsc"), 1)
V1 = parse_rules({"gpt-4o": {"input_tokens": "5", "output_tokens": "25", "per_unit": "1000"}})  # 7.5
V2 = parse_rules({"gpt-4o": {"input_tokens": "7.5", "output_tokens": "25", "per_unit": "1000"}})  # 10


def catalog(*versions: dict) -> tuple[CatalogIndex, dict]:
    index, by_version = CatalogIndex(), {}
    for n, rules in enumerate(versions, 1):
        table = BurnTable("bt_1", "cus_a", "standard", n, NOW - timedelta(days=10), rules)
        record = BurnTableRecord(table, NOW - timedelta(days=10), NOW - timedelta(days=10))
        index.apply(key_of(record), record)
        by_version[("bt_1", n)] = table
    return index, by_version


def event(event_id: str, user: str = "u1", customer: str = "cus_a", **fields) -> dict:
    record = {
        "event_id": event_id, "customer_id": customer, "user_id": user, "team_id": None, "event_type": "TOKEN_USAGE",
        "feature_id": "chat", "provider": "openai", "model": "gpt-4o", "input_tokens": 1000, "output_tokens": 100,
        "cached_input_tokens": None, "image_count": None, "image_size": None, "quality": None, "unit_type": None,
        "quantity": None, "reservation_id": None, "timestamp": NOW - timedelta(hours=1), "metadata": None,
        "received_at": NOW, "source": "kafka",
    }
    record.update(fields)
    return record


def rerater(charged: dict, version: int | None = None, users: frozenset = frozenset(), **options) -> Rerater:
    index, versions = catalog(V1, V2)
    selection = Selection("cus_a", NOW - timedelta(days=1), NOW, users)
    return Rerater(0, selection, CODEC, Rates(index, "cus_a", versions, version), charged, "rr_1", **options)


def feed(r: Rerater, *records: dict) -> None:
    for record in records:
        r.feed(f"{record['customer_id']}:{record['user_id']}".encode(), CODEC.encode(record))


def wallet(user: str = "u1") -> str:
    return wallet_ids.user_wallet("cus_a", user)


def test_each_charged_event_is_re_rated_and_the_difference_is_an_extra_debit():
    r = rerater({"e1": Charged(wallet(), Decimal("7.5")), "e2": Charged(wallet(), Decimal("7.5"))})
    feed(r, event("e1"), event("e2"))
    totals = r.outcome.users["u1"]
    assert (totals.events, totals.adjusted, totals.charged, totals.rerated) == (2, 2, Decimal(15), Decimal(20))
    assert [(a.event_id, a.wallet_id, a.amount, a.kind) for a in r.outcome.adjustments] == [
        ("e1", wallet(), Decimal("-2.5"), "adjustment_debit"), ("e2", wallet(), Decimal("-2.5"), "adjustment_debit")]


def test_a_named_version_rates_instead_of_the_one_in_force_and_may_credit_back():
    r = rerater({"e1": Charged(wallet(), Decimal("10"))}, version=1)
    feed(r, event("e1"))
    [adjustment] = r.outcome.adjustments
    assert (adjustment.amount, adjustment.kind) == (Decimal("2.5"), "adjustment_credit")


def test_what_is_already_booked_is_not_booked_again_and_a_further_change_gets_a_new_command():
    settled = rerater({"e1": Charged(wallet(), Decimal("7.5"), booked=Decimal("2.5"), booked_count=1)})
    feed(settled, event("e1"))
    assert settled.outcome.adjustments == [] and settled.outcome.users["u1"].adjusted == 1
    changed = rerater({"e1": Charged(wallet(), Decimal("7.5"), booked=Decimal("1"), booked_count=1)})
    feed(changed, event("e1"))
    [again] = changed.outcome.adjustments
    first = Adjustment("rr_1", "cus_a", "e1", wallet(), "u1", Decimal("-1"), 0)
    assert again.amount == Decimal("-1.5") and again.command_id != first.command_id


def test_copies_count_once_and_a_copy_with_another_body_is_a_conflict():
    r = rerater({"e1": Charged(wallet(), Decimal("7.5"))})
    original = event("e1")
    feed(r, original, {**original, "received_at": NOW + timedelta(seconds=5), "source": "http"},
         {**original, "output_tokens": 999})
    totals = r.outcome.users["u1"]
    assert (totals.events, totals.duplicates, totals.conflicts, len(r.outcome.adjustments)) == (1, 1, 1, 1)


def test_other_tenants_other_users_and_events_outside_the_range_are_left_alone():
    r = rerater({"e1": Charged(wallet(), Decimal("7.5"))}, users=frozenset({"u1"}))
    feed(r, event("x1", customer="cus_b"), event("x2", user="u2"), event("x3", timestamp=NOW - timedelta(days=2)),
         event("x4", timestamp=NOW), event("e1"))
    assert r.outcome.read == 5 and list(r.outcome.users) == ["u1"] and r.outcome.users["u1"].events == 1


def test_uncharged_and_unrateable_events_book_nothing():
    r = rerater({"e2": Charged(wallet(), Decimal("1"))})
    feed(r, event("e1"), event("e2", model="unknown-model"))
    totals = r.outcome.users["u1"]
    assert (totals.events, totals.uncharged, totals.unrateable, r.outcome.adjustments) == (2, 1, 1, [])


def test_an_event_id_charged_on_two_wallets_is_matched_to_this_records_wallet():
    charged = {"e1": (Charged(wallet("u2"), Decimal("7.5")), Charged(wallet("u1"), Decimal("5")))}
    r = rerater(charged)
    feed(r, event("e1"))
    assert [(a.wallet_id, a.amount) for a in r.outcome.adjustments] == [(wallet("u1"), Decimal("-5"))]


def test_a_dry_run_keeps_totals_only_and_rebuild_keeps_each_rating():
    dry = rerater({"e1": Charged(wallet(), Decimal("7.5"))}, keep_adjustments=False)
    feed(dry, event("e1"))
    assert dry.outcome.adjustments == [] and dry.outcome.users["u1"].rerated == Decimal(10)
    rebuild = rerater({"e1": Charged(wallet(), Decimal("7.5"))}, keep_ratings=True)
    feed(rebuild, event("e1"))
    assert (rebuild.outcome.rerated["e1"].credits, rebuild.outcome.rerated["e1"].burn_table_version) == (Decimal(10), 2)


@pytest.mark.parametrize("user_ids", [frozenset(), frozenset({"u1", "u:2"})])
def test_the_key_filter_matches_the_tenants_keys_only(user_ids):
    wanted = Selection("cus_a", NOW, NOW, user_ids).key_filter()
    assert wanted(b"cus_a:u1") and not wanted(b"cus_ab:u1") and not wanted(None)
    assert wanted(b"cus_a:u3") == (not user_ids)


def _books(charged: dict, records: list[dict], start: datetime, end: datetime) -> dict[str, Decimal]:
    index, versions = catalog(V1, V2)
    r = Rerater(0, Selection("cus_a", start, end), CODEC, Rates(index, "cus_a", versions, None), charged, "rr")
    feed(r, *records)
    return {a.event_id: a.amount for a in r.outcome.adjustments}


def _stream(draw_ids, draw_tokens, draw_minutes) -> list[dict]:
    return [event(f"e{i}", input_tokens=tokens, output_tokens=tokens // 3, timestamp=NOW - timedelta(minutes=minutes))
            for i, tokens, minutes in zip(draw_ids, draw_tokens, draw_minutes)]


@hypothesis_settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_one_pass_books_what_split_passes_book_and_a_second_pass_books_nothing(data):
    """What makes replays safe to split, repeat and resume: per event, against the ledger."""
    n = data.draw(st.integers(1, 30))
    ids = data.draw(st.lists(st.integers(0, 15), min_size=n, max_size=n))  # repeats: client retries
    tokens = data.draw(st.lists(st.integers(1, 50_000), min_size=n, max_size=n))
    minutes = data.draw(st.lists(st.integers(1, 600), min_size=n, max_size=n))
    records = _stream(ids, tokens, minutes)
    charged = {r["event_id"]: Charged(wallet(), Decimal(data.draw(st.integers(0, 400))) / 4) for r in records}
    start, end = NOW - timedelta(hours=11), NOW
    split = NOW - timedelta(minutes=data.draw(st.integers(0, 660)))

    whole = _books(charged, records, start, end)
    halves = {**_books(charged, records, start, split), **_books(charged, records, split, end)}
    assert halves == whole

    booked = {e: c._replace(before=c.before - whole.get(e, 0)) for e, c in charged.items()}  # the ledger after it
    assert _books(booked, records, start, end) == {}


# --- the pass against the per-event reference ---------------------------------------------------
# The reference is the pass as it was before it read rows and summed in integers (0ad5b8c and
# earlier): every record decoded whole, `rate_event` per event, Decimal totals.

class Reference:
    def __init__(self, selection: Selection, rates: Rates, charged: dict, run_id: str, keep_adjustments: bool,
                 keep_ratings: bool):
        self.s, self.rates, self.charged, self.run_id = selection, rates, charged, run_id
        self.keep_adjustments, self.keep_ratings = keep_adjustments, keep_ratings
        self.wanted, self.first = selection.key_filter(), {}
        self.users, self.adjustments, self.rerated, self.read = {}, [], {}, 0

    def feed(self, key, value) -> None:
        self.read += 1
        if not self.wanted(key):
            return
        try:
            record = CODEC.decode(value)
        except ValueError:
            return
        s = self.s
        if record["customer_id"] != s.customer_id or (s.user_ids and record["user_id"] not in s.user_ids):
            return
        first = self.first.get(record["event_id"])
        if first is not None:
            if first[1]:
                totals = self.users.setdefault(record["user_id"], UserTotals())
                if copy_outcome(body_hash(CODEC.decode(first[0])), record) == "duplicate":
                    totals.duplicates += 1
                else:
                    totals.conflicts += 1
            return
        in_range = s.start <= record["timestamp"] < s.end
        self.first[record["event_id"]] = (value, in_range)
        if in_range:
            totals = self.users.setdefault(record["user_id"], UserTotals())
            totals.events += 1
            self.compare(record, totals)

    def compare(self, record, totals) -> None:
        found = self.charged.get(record["event_id"])
        if found is not None and not isinstance(found, Charged):
            candidates = wallet_ids.candidates(record["customer_id"], record["user_id"], record["team_id"],
                                               ("user", "team", "customer"))
            found = next((c for c in found if c.wallet_id in candidates), None)
        if found is None:
            totals.uncharged += 1
            return
        try:
            result = self.rates.index.rate_event(self.rates.customer_id, RateParams.from_record(record),
                                                 self.rates._choose).result
        except NoRate:
            totals.unrateable += 1
            return
        totals.charged += found.before
        totals.rerated += result.credits
        if self.keep_ratings:
            self.rerated[record["event_id"]] = result
        if result.credits != found.before:
            totals.adjusted += 1
        to_book = result.credits - found.before - found.booked
        if to_book and self.keep_adjustments:
            self.adjustments.append(Adjustment(self.run_id, record["customer_id"], record["event_id"], found.wallet_id,
                                               record["user_id"], -to_book, found.booked_count))


def random_catalog(rng: random.Random, with_tables: bool) -> tuple[CatalogIndex, dict]:
    """The benchmark's burn table, then versions with scaled rates from random times; two
    provider-price versions for a few models."""
    index, versions = CatalogIndex(), {}
    if with_tables:
        for n in range(1, rng.randrange(2, 5)):
            factor = Decimal(rng.choice(("1", "2", "0.37", "1.000000001")))
            rules = parse_rules(scaled(RULES, factor))
            since = NOW - timedelta(hours=rng.randrange(0, 48) if n > 1 else 24 * 30)
            table = BurnTable("bt_1", "cus_a", "bench", n, since, rules)
            record = BurnTableRecord(table, NOW - timedelta(days=40), NOW - timedelta(days=40))
            index.apply(key_of(record), record)
            versions[("bt_1", n)] = table
    for model in ("gpt-4o", "gpt-4o-mini", "claude-sonnet-4-20250514", "dall-e-3", "whisper-1"):
        for n, since in enumerate((NOW - timedelta(days=60), NOW - timedelta(hours=rng.randrange(1, 48)))):
            provider = "anthropic" if model.startswith("claude") else "openai"
            price = ProviderPrice(provider, model, since, f"p{n}", input_mtok=Decimal(rng.choice(("2.5", "3", "0.15"))),
                                  output_mtok=Decimal("10"), cache_read_mtok=rng.choice((None, Decimal("1.25"))),
                                  per_image=Decimal("0.04") if model == "dall-e-3" else None,
                                  per_unit=Decimal("0.006") if model == "whisper-1" else None)
            record = PriceRecord(price)
            index.apply(key_of(record), record)
    return index, versions


def scaled(rules, factor: Decimal):
    if isinstance(rules, dict):
        return {k: v if k == "per_unit" else scaled(v, factor) for k, v in rules.items()}
    return str(Decimal(str(rules)) * factor)


def random_stream(rng: random.Random, customer: str) -> list[dict]:
    """Realistic events (loadgen: every event type and model, retries, late events) of two
    tenants, some conflicting copies, unknown models and odd quantities among them."""
    generator = EventGenerator(rng.randrange(1 << 30), [customer, "cus_b"], users=4, duplicate_share=0.1,
                               late_share=0.2, now=lambda: NOW - timedelta(hours=rng.randrange(0, 72)))
    out = []
    for _ in range(rng.randrange(50, 250)):
        fields = generator.next()
        record = to_record(convert_event(fields), customer_id=fields["customer_id"],
                           source=rng.choice(("kafka", "http")), received_at=NOW, limits=LIMITS)
        roll = rng.random()
        if roll < 0.05 and out:
            record = {**rng.choice(out), "output_tokens": rng.randrange(1, 10_000)}  # a conflicting copy
        elif roll < 0.08:
            record["model"] = "no-such-model"
        elif roll < 0.1 and record["quantity"] is not None:
            record["quantity"] = Decimal(rng.randrange(1, 10**9)).scaleb(-rng.randrange(0, 13))
        elif roll < 0.12:
            record["team_id"] = "team-1"
        elif roll < 0.14 and record["input_tokens"] is not None:  # more cached than input: left to `rate`
            record["cached_input_tokens"] = record["input_tokens"] + rng.randrange(1, 100)
        out.append(record)
    return out


def random_ledger(rng: random.Random, records: list[dict], customer: str) -> dict:
    charged = {}
    for record in records:
        if record["event_id"] in charged or rng.random() < 0.1:
            continue
        wallet_id = wallet_ids.user_wallet(customer, record["user_id"])
        before = Decimal(rng.randrange(0, 10**15)).scaleb(-12)
        roll = rng.random()
        if roll < 0.1:
            charged[record["event_id"]] = Charged(wallet_id, before, Decimal(rng.randrange(-10**13, 10**13)).scaleb(-12),
                                                  rng.randrange(1, 3))
        elif roll < 0.15:
            other = Charged(wallet_ids.user_wallet(customer, "someone-else"), before)
            mine = Charged(rng.choice((wallet_id, wallet_ids.team_wallet(customer, "team-1"))), before + 1)
            charged[record["event_id"]] = (other, mine)
        else:
            charged[record["event_id"]] = Charged(wallet_id, before)
    return charged


SEEDS = range(40)


@pytest.mark.parametrize("seed", SEEDS)
def test_the_pass_counts_rates_and_books_exactly_as_the_per_event_reference(seed):
    outcome, reference = both_passes(seed)
    assert outcome.users == reference.users
    assert outcome.adjustments == reference.adjustments
    assert outcome.rerated == reference.rerated
    assert outcome.read == reference.read


def test_the_random_streams_take_every_path():
    overall = UserTotals()
    for seed in SEEDS:
        for totals in both_passes(seed)[0].users.values():
            overall.add(totals)
    assert all(getattr(overall, name) > 0 for name in ("events", "duplicates", "conflicts", "uncharged", "unrateable",
                                                       "adjusted")), overall


def both_passes(seed: int):
    rng = random.Random(seed)
    customer = "cus_a"
    index, versions = random_catalog(rng, with_tables=seed % 4 != 0)  # 1 in 4: the default burn table
    version = rng.choice((None, None, 1, 2))
    records = random_stream(rng, customer)
    charged = random_ledger(rng, records, customer)
    users = frozenset() if rng.random() < 0.7 else frozenset({"user-1", "user-2"})
    selection = Selection(customer, NOW - timedelta(hours=rng.randrange(1, 60)), NOW - timedelta(hours=rng.randrange(0, 2)),
                          users)
    keep_adjustments, keep_ratings = rng.random() < 0.7, rng.random() < 0.3
    rates = Rates(index, customer, versions, version)
    reference = Reference(selection, rates, charged, "rr", keep_adjustments, keep_ratings)
    ledger = LedgerCharges.of(charged)
    new = Rerater(3, selection, CODEC, Rates(index, customer, versions, version), ledger, "rr", keep_adjustments,
                  keep_ratings)
    pairs = [(f"{r['customer_id']}:{r['user_id']}".encode(), CODEC.encode(r)) for r in records]
    pairs.insert(rng.randrange(len(pairs)), (f"{customer}:user-1".encode(), b"\x00\x00\x00\x00\x01\x99"))  # corrupt
    for key, value in pairs:
        reference.feed(key, value)
    cut = rng.randrange(len(pairs))
    new.feed_many(pairs[:cut])
    new.feed_many(iter(pairs[cut:]))
    return new.outcome, reference


def test_ledger_charges_answer_as_the_mapping_they_were_made_of():
    charged = {"e1": Charged(wallet(), Decimal("7.5")), "e2": Charged(wallet(), Decimal("1"), Decimal("2"), 1),
               "e3": (Charged(wallet("u2"), Decimal("1")), Charged(wallet(), Decimal("2")))}
    ledger = LedgerCharges.of(charged)
    assert len(ledger) == 3 and ledger.get("nope") is None
    assert {e: ledger.get(e) for e in charged} == charged
    assert ledger.units == {"e1": 7_500_000_000_000} and set(ledger.others) == {"e2", "e3"}
    with pytest.raises(ValueError, match="12 decimal places"):
        LedgerCharges.of({"e4": Charged(wallet(), Decimal("1E-13"))})


def test_a_rows_prefix_holds_every_field_the_body_hash_reads():
    decode = row_decoder(CODEC)
    original = event("e1", metadata={"k": "v"})
    retry = {**original, "received_at": NOW + timedelta(seconds=9), "source": "http"}
    other = {**original, "metadata": {"k": "w"}}
    a, b, c = (CODEC.encode(r) for r in (original, retry, other))
    ra, rb, rc = decode(a), decode(b), decode(c)
    assert ra.prefix == rb.prefix == rc.prefix and a[:ra.prefix] == b[:rb.prefix] != c[:rc.prefix]
    assert body_hash(original) == body_hash(retry) != body_hash(other)
    assert ra.timestamp == (original["timestamp"] - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1)
    assert ra.params() == RateParams.from_record(original)
