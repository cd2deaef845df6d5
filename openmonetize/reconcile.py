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
