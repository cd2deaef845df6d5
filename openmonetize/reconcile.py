"""The invariant every wallet holds: its balance equals the sum of its ledger entries.

`check` is pure (the fault tests and `openmonetize reconcile` share it). A ledger entry may be
emitted twice after a crash (same deterministic id, same amount): it counts once; the same id
with another amount is itself a violation. Today the balances and the ledger are read from
`wallet.balances` and `ledger.entries`; the Postgres ledger joins as a source with the sinks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
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
    per_wallet: dict[str, list[Decimal]] = {}
    for entry in by_id.values():
        per_wallet.setdefault(entry["wallet_id"], []).append(entry["amount"])
    found = []
    for wallet_id in sorted(set(balances) | set(per_wallet)):
        amounts = per_wallet.get(wallet_id, [])
        ledger_sum = total(amounts) if amounts else quantize(ZERO)
        balance = balances.get(wallet_id)
        if wallet_id in conflicts:
            found.append(Mismatch(wallet_id, balance, ledger_sum, len(amounts), "an entry id with two amounts"))
        elif balance is None:
            found.append(Mismatch(wallet_id, None, ledger_sum, len(amounts), "ledger entries but no balance"))
        elif balance != ledger_sum:
            found.append(Mismatch(wallet_id, balance, ledger_sum, len(amounts), "balance differs from the ledger"))
    return found


def latest_balances(records: Iterable[Mapping]) -> dict[str, Decimal]:
    """The newest (highest version) balance per wallet from wallet.balances records."""
    latest: dict[str, Mapping] = {}
    for record in records:
        if record["version"] >= latest.get(record["wallet_id"], {"version": -1})["version"]:
            latest[record["wallet_id"]] = record
    return {wallet_id: record["balance"] for wallet_id, record in latest.items()}


def from_topics(settings, customer_id: str | None = None) -> tuple[list[Mismatch], int, int]:
    """(mismatches, wallets, entries) over the whole of wallet.balances and ledger.entries."""
    from psycopg_pool import ConnectionPool

    from openmonetize.dlq import reader_codec
    from openmonetize.topic_reader import read_to_end
    from schemas.registry import SchemaRegistry
    from schemas.topics import topics

    spec = topics(settings)
    with ConnectionPool(settings.database_url, min_size=1, max_size=1, open=True) as pool:
        registry = SchemaRegistry(pool)
        balance_codec = reader_codec(registry, spec.wallet_balances)
        ledger_codec = reader_codec(registry, spec.ledger_entries)
        balances = latest_balances(balance_codec.decode(m.value())
                                   for m in read_to_end(settings.kafka_bootstrap, spec.wallet_balances.name)
                                   if m.value() is not None)
        entries = [ledger_codec.decode(m.value()) for m in read_to_end(settings.kafka_bootstrap, spec.ledger_entries.name)]
    if customer_id is not None:
        prefix = f"w:{customer_id}:"
        balances = {w: b for w, b in balances.items() if w.startswith(prefix)}
        entries = [e for e in entries if e["wallet_id"].startswith(prefix)]
    return check(balances, entries), len(balances), len(entries)


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


@dataclass
class Report:
    sources: list[str]
    wallets: int
    entries: int | None  # ledger.entries records read (None: the topic source was not asked for)
    postgres_entries: int | None  # rows of ledger_entries (None: not compared)
    mismatches: list[tuple[str, Mismatch]]  # (source, mismatch)


def reconcile(settings, customer_id: str | None = None, source: str = "both") -> Report:
    """`source`: topics, postgres or both (both: postgres only when its table exists)."""
    from psycopg_pool import ConnectionPool

    from openmonetize.dlq import reader_codec
    from openmonetize.topic_reader import read_to_end
    from schemas.registry import SchemaRegistry
    from schemas.topics import topics

    if source not in ("topics", "postgres", "both"):
        raise ValueError(f"unknown source {source!r}")
    spec = topics(settings)
    with ConnectionPool(settings.database_url, min_size=1, max_size=1, open=True) as pool:
        registry = SchemaRegistry(pool)
        balance_codec = reader_codec(registry, spec.wallet_balances)
        balances = latest_balances(balance_codec.decode(m.value())
                                   for m in read_to_end(settings.kafka_bootstrap, spec.wallet_balances.name)
                                   if m.value() is not None)
        entries = None
        if source in ("topics", "both"):
            ledger_codec = reader_codec(registry, spec.ledger_entries)
            entries = [ledger_codec.decode(m.value())
                       for m in read_to_end(settings.kafka_bootstrap, spec.ledger_entries.name)]
    if customer_id is not None:
        prefix = f"w:{customer_id}:"
        balances = {w: b for w, b in balances.items() if w.startswith(prefix)}
        if entries is not None:
            entries = [e for e in entries if e["wallet_id"].startswith(prefix)]
    sources, found = [], []
    if entries is not None:
        sources.append("topics")
        found += [("topics", m) for m in check(balances, entries)]
    sums = None
    if source in ("postgres", "both"):
        sums = postgres_sums(settings.database_url, customer_id)
        if sums is None and source == "postgres":
            raise RuntimeError("the ledger_entries table does not exist: run `openmonetize migrate`")
    if sums is not None:
        sources.append("postgres")
        found += [("postgres", m) for m in check_postgres(balances, sums)]
    return Report(sources, len(balances), None if entries is None else len(entries),
                  None if sums is None else sum(rows for _, rows in sums.values()), found)
