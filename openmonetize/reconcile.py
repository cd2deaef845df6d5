"""The invariant every wallet holds: its balance equals the sum of its ledger entries.

`check` is pure (the fault tests and `openmonetize reconcile` share it). A ledger entry may be
emitted twice after a crash (same deterministic id, same amount): it counts once; the same id
with another amount is itself a violation.

`reconcile` compares, per wallet, the stream's balance (`wallet.balances`) with the ledger in
`ledger.entries` and in Postgres (`ledger_entries`), and what the ledger debited for usage with
the rated events in ClickHouse (`usage_events FINAL` and its daily rollup); the adjustments of a
rebilling replay count there only for the events whose ClickHouse row it rewrote.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from openmonetize.billing.money import ZERO, quantize, total


@dataclass(frozen=True)
class Mismatch:
    wallet_id: str
    balance: Decimal | None  # None: the ledger has entries for a wallet with no published balance
    ledger_sum: Decimal
    entries: int
    problem: str


def check(balances: Mapping[str, Decimal], entries: Iterable[Mapping]) -> list[Mismatch]:
    """Entries are ledger records (entry_id, wallet_id, amount); returns every violated wallet."""
    by_id: dict[str, Mapping] = {}
    conflicts: set[str] = set()
    for entry in entries:
        seen = by_id.setdefault(entry["entry_id"], entry)
        if seen["amount"] != entry["amount"] or seen["wallet_id"] != entry["wallet_id"]:
            conflicts.add(entry["wallet_id"])
    sums = ledger_sums(by_id.values())
    found = []
    for wallet_id in sorted(set(balances) | set(sums)):
        ledger_sum, count = sums.get(wallet_id, (quantize(ZERO), 0))
        balance = balances.get(wallet_id)
        if wallet_id in conflicts:
            found.append(Mismatch(wallet_id, balance, ledger_sum, count, "an entry id with two amounts"))
        elif balance is None:
            found.append(Mismatch(wallet_id, None, ledger_sum, count, "ledger entries but no balance"))
        elif balance != ledger_sum:
            found.append(Mismatch(wallet_id, balance, ledger_sum, count, "balance differs from the ledger"))
    return found


def ledger_sums(entries: Iterable[Mapping]) -> dict[str, tuple[Decimal, int]]:
    """wallet → (sum of amounts, entries) of ledger records; a repeated entry id counts once."""
    by_id: dict[str, Mapping] = {}
    for entry in entries:
        by_id.setdefault(entry["entry_id"], entry)
    per_wallet: dict[str, list[Decimal]] = {}
    for entry in by_id.values():
        per_wallet.setdefault(entry["wallet_id"], []).append(entry["amount"])
    return {wallet_id: (total(amounts), len(amounts)) for wallet_id, amounts in per_wallet.items()}


def latest_balances(records: Iterable[Mapping]) -> dict[str, Decimal]:
    """The newest (highest version) balance per wallet from wallet.balances records."""
    latest: dict[str, Mapping] = {}
    for record in records:
        if record["version"] >= latest.get(record["wallet_id"], {"version": -1})["version"]:
            latest[record["wallet_id"]] = record
    return {wallet_id: record["balance"] for wallet_id, record in latest.items()}


# --- the Postgres ledger (sinks/ledger_postgres.py) ---------------------------------------
def check_postgres(balances: Mapping[str, Decimal], sums: Mapping[str, tuple[Decimal, int]]) -> list[Mismatch]:
    """Per wallet, the stream's balance against the sum of its rows in Postgres `ledger_entries`
    (`sums`: wallet → (sum, rows)). A funded wallet with no rows, or rows with no balance, drift."""
    found = []
    for wallet_id in sorted(set(balances) | set(sums)):
        ledger_sum, rows = sums.get(wallet_id, (quantize(ZERO), 0))
        balance = balances.get(wallet_id)
        if balance is None:
            found.append(Mismatch(wallet_id, None, ledger_sum, rows, "postgres ledger rows but no balance"))
        elif balance != ledger_sum:
            found.append(Mismatch(wallet_id, balance, ledger_sum, rows, "balance differs from the postgres ledger"))
    return found


def postgres_sums(database_url: str, customer_id: str | None = None) -> dict[str, tuple[Decimal, int]] | None:
    """wallet → (sum of amounts, rows) from `ledger_entries`; None when the table does not exist."""
    import psycopg

    with psycopg.connect(database_url, connect_timeout=5) as conn:
        if conn.execute("SELECT to_regclass('ledger_entries')").fetchone()[0] is None:
            return None
        sql = "SELECT wallet_id, sum(amount), count(*) FROM ledger_entries"
        params: tuple = ()
        if customer_id is not None:
            sql += " WHERE customer_id = %s"
            params = (customer_id,)
        rows = conn.execute(sql + " GROUP BY wallet_id", params).fetchall()
    return {wallet_id: (quantize(amount), count) for wallet_id, amount, count in rows}


def plain(amount: Decimal) -> str:
    """An amount for people: no exponent, no trailing zeros (12.5, not 12.500000000000 or 0E-12)."""
    return format(amount.normalize(), "f") if amount else "0"


# --- ClickHouse (sinks/usage_clickhouse.py) -----------------------------------------------
def check_clickhouse(debits: Mapping[str, tuple[Decimal, int]], events: Mapping[str, tuple[Decimal, int]],
                     rollups: Mapping[str, tuple[Decimal, int]], balances: Mapping[str, Decimal]) -> list[Mismatch]:
    """Per wallet, what the ledger debited for usage (`debits`: wallet → (credits, entries)) against
    the rated events in ClickHouse (`events`, from usage_events FINAL) and its rollups (`rollups`,
    from usage_daily): same credits, same count. Mismatch.ledger_sum is the ledger's debit total."""
    found = []
    zero = (quantize(ZERO), 0)
    for wallet_id in sorted(set(debits) | set(events) | set(rollups)):
        (debited, entries), (credits, rows) = debits.get(wallet_id, zero), events.get(wallet_id, zero)
        rolled, rolled_events = rollups.get(wallet_id, zero)
        problem = None
        if (credits, rows) != (debited, entries):
            problem = (f"clickhouse holds {rows} events for {plain(credits)} credits, the ledger {entries} debits "
                       f"for {plain(debited)}")
        elif (rolled, rolled_events) != (credits, rows):
            problem = (f"clickhouse rollups hold {rolled_events} events for {plain(rolled)} credits, usage_events "
                       f"{rows} for {plain(credits)}")
        if problem:
            found.append(Mismatch(wallet_id, balances.get(wallet_id), debited, entries, problem))
    return found


def clickhouse_sums(settings, customer_id: str | None = None) -> tuple[dict, dict]:
    """(wallet → (credits, events) from usage_events FINAL, the same from the usage_daily rollup)."""
    from openmonetize import clickhouse_client

    where, params = "", {}
    if customer_id is not None:
        where, params = "WHERE customer_id = {customer:String}", {"customer": customer_id}
    client = clickhouse_client.get_client(settings, "writer", database=settings.clickhouse_database,
                                           connect_timeout=5)
    try:
        def sums(sql: str) -> dict:
            return {w: (quantize(c), int(n)) for w, c, n in client.query(sql, parameters=params).result_rows}

        return (sums(f"SELECT wallet_id, sum(credits), count() FROM usage_events FINAL {where} GROUP BY wallet_id"),
                sums(f"SELECT wallet_id, sum(credits), sum(events) FROM usage_daily {where} GROUP BY wallet_id"))
    finally:
        client.close()


def debit_sums(entries: Iterable[Mapping]) -> dict[str, tuple[Decimal, int]]:
    """wallet → (credits debited for usage, entries) from ledger records; a repeated id counts once."""
    return {w: (-amount, n) for w, (amount, n) in ledger_sums(e for e in entries if e["kind"] == "usage_debit").items()}


def postgres_debit_sums(database_url: str, customer_id: str | None = None) -> dict[str, tuple[Decimal, int]]:
    import psycopg

    sql = "SELECT wallet_id, -sum(amount), count(*) FROM ledger_entries WHERE kind = 'usage_debit'"
    params: tuple = ()
    if customer_id is not None:
        sql += " AND customer_id = %s"
        params = (customer_id,)
    with psycopg.connect(database_url, connect_timeout=5) as conn:
        rows = conn.execute(sql + " GROUP BY wallet_id", params).fetchall()
    return {wallet_id: (quantize(credits), count) for wallet_id, credits, count in rows}


# --- rebilling (openmonetize/rebilling/) ------------------------------------------------
# A replay books adjustments per event; ClickHouse keeps the credits first charged unless the
# replay rewrote the event's row (--rebuild-analytics: revision > 0, the re-rated credits).
# So what ClickHouse must hold for a wallet is its usage debits plus the adjustments of the
# events whose row was rewritten; adjustments of events left as charged are not in it.
def with_rebilled(debits: Mapping[str, tuple[Decimal, int]], adjustments: Iterable[tuple[str, str, str, Decimal]],
                  rewritten: set[tuple[str, str]]) -> dict[str, tuple[Decimal, int]]:
    """`debits` (wallet → (credits, entries)) plus the credits the adjustments (customer, wallet,
    event id, signed amount) of the `rewritten` (customer, event id) added."""
    found = dict(debits)
    for customer_id, wallet_id, event_id, amount in adjustments:
        if (customer_id, event_id) in rewritten:
            credits, count = found.get(wallet_id, (ZERO, 0))
            found[wallet_id] = (quantize(credits - amount), count)
    return found


def event_adjustments(entries: Iterable[Mapping]) -> list[tuple[str, str, str, Decimal]]:
    """(customer, wallet, event id, amount) of the adjustments booked for an event; a repeated id counts once."""
    by_id = {e["entry_id"]: e for e in entries if e["kind"] == "adjustment" and e.get("event_id")}
    return [(e["customer_id"], e["wallet_id"], e["event_id"], e["amount"]) for e in by_id.values()]


def postgres_event_adjustments(database_url: str, customer_id: str | None = None
                               ) -> list[tuple[str, str, str, Decimal]]:
    import psycopg

    sql = "SELECT customer_id, wallet_id, event_id, amount FROM ledger_entries WHERE kind = 'adjustment' AND event_id IS NOT NULL"
    params: tuple = ()
    if customer_id is not None:
        sql += " AND customer_id = %s"
        params = (customer_id,)
    with psycopg.connect(database_url, connect_timeout=5) as conn:
        return conn.execute(sql, params).fetchall()


def clickhouse_rewritten(settings, customer_id: str | None = None) -> set[tuple[str, str]]:
    """(customer, event id) of the usage_events rows a replay rewrote (revision > 0)."""
    from openmonetize import clickhouse_client

    where, params = "", {}
    if customer_id is not None:
        where, params = "AND customer_id = {customer:String}", {"customer": customer_id}
    client = clickhouse_client.get_client(settings, "writer", database=settings.clickhouse_database,
                                           connect_timeout=5)
    try:
        rows = client.query(f"SELECT customer_id, event_id FROM usage_events FINAL WHERE revision > 0 {where}",
                            parameters=params).result_rows
    finally:
        client.close()
    return {(customer_id, event_id) for customer_id, event_id in rows}


@dataclass
class Line:
    """One wallet's figures in every source compared (None: not compared)."""

    wallet_id: str
    balance: Decimal | None
    topic_sum: Decimal | None = None
    postgres_sum: Decimal | None = None
    debited: Decimal | None = None  # credits the ledger debited for usage
    clickhouse_credits: Decimal | None = None
    clickhouse_events: int | None = None
    problems: list[str] = field(default_factory=list)


@dataclass
class Report:
    sources: list[str]
    wallets: int
    entries: int | None  # ledger.entries records read (None: the topic source was not asked for)
    postgres_entries: int | None  # rows of ledger_entries (None: not compared)
    clickhouse_events: int | None  # rows of usage_events FINAL (None: not compared)
    mismatches: list[tuple[str, Mismatch]]  # (source, mismatch)
    lines: list[Line]


SOURCES = ("topics", "postgres", "clickhouse")


def reconcile(settings, customer_id: str | None = None, source: str = "all") -> Report:
    """`source`: topics, postgres, clickhouse or all (all: Postgres only when its table exists)."""
    from schemas.topic_codecs import reader_codec
    from openmonetize.topic_reader import read_to_end
    from schemas.registry_client import registry_session
    from schemas.topics import topics

    if source not in (*SOURCES, "all"):
        raise ValueError(f"unknown source {source!r}")
    wanted = SOURCES if source == "all" else (source,)
    spec = topics(settings)
    with registry_session(settings) as registry:
        balance_codec = reader_codec(registry, spec.wallet_balances)
        balances = latest_balances(balance_codec.decode(m.value())
                                   for m in read_to_end(settings.kafka_bootstrap, spec.wallet_balances.name)
                                   if m.value() is not None)
        entries = None
        if "topics" in wanted or ("clickhouse" in wanted and "postgres" not in wanted):
            ledger_codec = reader_codec(registry, spec.ledger_entries)
            entries = [ledger_codec.decode(m.value())
                       for m in read_to_end(settings.kafka_bootstrap, spec.ledger_entries.name)]
    if customer_id is not None:
        prefix = f"w:{customer_id}:"
        balances = {w: b for w, b in balances.items() if w.startswith(prefix)}
        if entries is not None:
            entries = [e for e in entries if e["wallet_id"].startswith(prefix)]
    lines = {w: Line(w, b) for w, b in balances.items()}

    def line(wallet_id: str) -> Line:
        return lines.setdefault(wallet_id, Line(wallet_id, None))

    sources, found = [], []
    if "topics" in wanted:
        sources.append("topics")
        found += [("topics", m) for m in check(balances, entries)]
        for wallet_id, (amount, _n) in ledger_sums(entries).items():
            line(wallet_id).topic_sum = amount
    sums = None
    if "postgres" in wanted:
        sums = postgres_sums(settings.database_url, customer_id)
        if sums is None and source == "postgres":
            raise RuntimeError("the ledger_entries table does not exist: run `openmonetize migrate`")
    if sums is not None:
        sources.append("postgres")
        found += [("postgres", m) for m in check_postgres(balances, sums)]
        for wallet_id, (total_, _rows) in sums.items():
            line(wallet_id).postgres_sum = total_
    events = None
    if "clickhouse" in wanted:
        sources.append("clickhouse")
        debits = postgres_debit_sums(settings.database_url, customer_id) if sums is not None else debit_sums(entries)
        events, rollups = clickhouse_sums(settings, customer_id)
        adjustments = (postgres_event_adjustments(settings.database_url, customer_id) if sums is not None
                       else event_adjustments(entries))
        debits = with_rebilled(debits, adjustments, clickhouse_rewritten(settings, customer_id))
        found += [("clickhouse", m) for m in check_clickhouse(debits, events, rollups, balances)]
        for wallet_id, (credits, _n) in debits.items():
            line(wallet_id).debited = credits
        for wallet_id, (credits, n) in events.items():
            line(wallet_id).clickhouse_credits, line(wallet_id).clickhouse_events = credits, n
    for where, mismatch in found:
        line(mismatch.wallet_id).problems.append(f"{mismatch.problem} [{where}]")
    return Report(sources, len(balances), None if entries is None or "topics" not in wanted else len(entries),
                  None if sums is None else sum(rows for _, rows in sums.values()),
                  None if events is None else sum(n for _, n in events.values()),
                  found, [lines[w] for w in sorted(lines)])
