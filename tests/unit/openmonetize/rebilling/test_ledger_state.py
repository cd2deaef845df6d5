"""What the ledger charged, folded from its rows: the same Charged per event as the fold of the
rows one by one (the code before the debits came as arrays), on random ledgers."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from openmonetize.billing.money import ZERO
from openmonetize.rebilling.ledger_state import charges
from openmonetize.rebilling.rerate import Charged


def reference(debit_rows, adjustment_rows) -> dict:
    debits: dict[tuple[str, str], Decimal] = {}
    for event_id, wallet_id, amount in debit_rows:
        debits[event_id, wallet_id] = -amount
    adjusted: dict[tuple[str, str], list] = {}
    for event_id, wallet_id, amount, ours in adjustment_rows:
        if (event_id, wallet_id) in debits:
            entry = adjusted.setdefault((event_id, wallet_id), [ZERO, ZERO, 0])
            if ours:
                entry[1] -= amount
                entry[2] += 1
            else:
                entry[0] -= amount
    found: dict = {}
    for (event_id, wallet_id), debited in debits.items():
        more = adjusted.get((event_id, wallet_id))
        item = Charged(wallet_id, debited) if more is None else Charged(wallet_id, debited + more[0], more[1], more[2])
        prior = found.get(event_id)
        found[event_id] = item if prior is None else (*((prior,) if isinstance(prior, Charged) else prior), item)
    return found


def amount(rng: random.Random) -> Decimal:
    return Decimal(rng.randrange(-10**16, 10**6)).scaleb(-12)


@pytest.mark.parametrize("seed", range(30))
def test_the_charges_are_the_row_by_row_fold(seed):
    rng = random.Random(seed)
    ids = [f"e{i}" for i in range(rng.randrange(1, 60))]
    wallets = ["w:c:user:a", "w:c:user:b", "w:c:team:t"]
    debit_rows = [(rng.choice(ids), rng.choice(wallets) if rng.random() < 0.2 else wallets[0], amount(rng))
                  for _ in range(rng.randrange(0, 80))]
    adjustment_rows = [(rng.choice(ids), rng.choice(wallets), amount(rng), rng.random() < 0.5)
                       for _ in range(rng.randrange(0, 10))]
    ledger = charges([r[0] for r in debit_rows], [r[1] for r in debit_rows],
                     [int(-r[2].scaleb(12)) for r in debit_rows], adjustment_rows)
    expected = reference(debit_rows, adjustment_rows)
    assert len(ledger) == len(expected)
    assert {event_id: ledger.get(event_id) for event_id in expected} == expected


def test_an_event_charged_once_and_never_adjusted_is_two_plain_entries():
    ledger = charges(["e1", "e2"], ["w1", "w2"], [5, 7], [("e2", "w2", Decimal("-1"), False)])
    assert (ledger.units, ledger.wallets) == ({"e1": 5}, {"e1": "w1"})
    assert ledger.others == {"e2": Charged("w2", Decimal("1.000000000007"), Decimal(0), 0)}
