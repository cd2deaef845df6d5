"""One partition's pass of a replay, without Kafka: raw usage.events records in offset order →
the selected events, deduplicated, re-rated and compared with what the ledger holds.

Dedupe is the usage agent's rule (openmonetize/usage_step.py, `copy_outcome`): per partition (a client retry
has the same key, so the same partition), the first record of a (customer, event_id) is the
event; a later record with the same body (`body_hash`) is a duplicate, one with another body a
conflicting duplicate; neither was ever charged. Like the agent, it looks at every record read,
before the time range: a copy whose own timestamp falls in the range is still a copy when the
first record's does not (a conflicting body may carry another time). The body hash is only
computed when a copy turns up, from the first record's bytes, kept for that purpose.

Rating is the pipeline's own entry point, `CatalogIndex.rate_event`, with the burn table and
price the catalog has in force NOW at the event's timestamp (or version V of that burn table).

The charge to compare with is the ledger's (`Charged`, by event id): the usage_debit plus every
adjustment booked since for that event. An event the ledger never charged (refused to the
DLQ, or not yet processed) is counted `uncharged` and left alone: `dlq retry` re-drives it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

from openmonetize import wallet_ids
from openmonetize.billing.burn_tables import BurnTable
from openmonetize.billing.default_burn_table import DEFAULT_BURN_TABLE_ID
from openmonetize.billing.money import ZERO
from openmonetize.billing.rating import NoRate, RateParams, RateResult
from openmonetize.billing.wallet import entry_id
from openmonetize.catalog.index import CatalogIndex
from openmonetize.usage_step import DUPLICATE, body_hash, copy_outcome

ALL_LEVELS = ("user", "team", "customer")


class Charged(NamedTuple):
    """What the ledger holds for one event on the wallet it was charged to (credits, > 0 costs).
    A named tuple: a run builds one per event of the range, and these are cheap to make."""

    wallet_id: str
    before: Decimal  # usage_debit and adjustments booked by other runs
    booked: Decimal = ZERO  # adjustments this run already booked (a resumed run)
    booked_count: int = 0


@dataclass(frozen=True)
class Adjustment:
    """One adjustment to book: `amount` is signed as in the ledger (> 0 gives credits back)."""

    run_id: str
    customer_id: str
    event_id: str
    wallet_id: str
    user_id: str
    amount: Decimal
    sequence: int  # this run's adjustments of the event before this one

    @property
    def command_id(self) -> str:
        """Deterministic: the same run, event, wallet and sequence give the same command."""
        digest = hashlib.sha256(f"{self.event_id}\x1f{self.wallet_id}\x1f{self.sequence}".encode()).hexdigest()
        return f"rb_{self.run_id}_{digest[:24]}"

    @property
    def entry_id(self) -> str:
        """The ledger entry the wallet agent makes of the command."""
        return entry_id(self.customer_id, self.command_id, self.wallet_id)

    @property
    def kind(self) -> str:
        return "adjustment_credit" if self.amount > 0 else "adjustment_debit"


@dataclass
class UserTotals:
    events: int = 0
    duplicates: int = 0
    conflicts: int = 0
    uncharged: int = 0
    unrateable: int = 0
    adjusted: int = 0
    charged: Decimal = ZERO
    rerated: Decimal = ZERO

    @property
    def difference(self) -> Decimal:
        return self.rerated - self.charged

    def add(self, other: UserTotals) -> None:
        for name in ("events", "duplicates", "conflicts", "uncharged", "unrateable", "adjusted", "charged", "rerated"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class PartitionOutcome:
    partition: int
    read: int = 0  # records read, every tenant's
    users: dict[str, UserTotals] = field(default_factory=dict)
    adjustments: list[Adjustment] = field(default_factory=list)
    rerated: dict[str, RateResult] = field(default_factory=dict)  # event id -> new rating (--rebuild-analytics)


@dataclass(frozen=True)
class Selection:
    """What a run replays: a tenant, optionally some of its users, events with start <= timestamp < end."""

    customer_id: str
    start: datetime
    end: datetime
    user_ids: frozenset[str] = frozenset()

    def key_filter(self) -> Callable[[bytes | None], bool]:
        """A test on the Kafka key (`customer:user`), so other tenants' records are never decoded."""
        if self.user_ids:
            keys = {f"{self.customer_id}:{user}".encode() for user in self.user_ids}
            return keys.__contains__
        prefix = f"{self.customer_id}:".encode()
        return lambda key: key is not None and key.startswith(prefix)


class Rates:
    """An event rated as the pipeline rates it (`CatalogIndex.rate_event`): with the burn table in
    force now at its time, or version V of that table."""

    def __init__(self, index: CatalogIndex, customer_id: str, versions: Mapping[tuple[str, int], BurnTable],
                 version: int | None):
        self.index = index
        self.customer_id = customer_id
        self.versions = versions
        self.version = version
        self._choose = None if version is None else self._version_v

    def rate(self, record: Mapping) -> RateResult:
        """Raises NoRate."""
        return self.index.rate_event(self.customer_id, RateParams.from_record(record), self._choose).result

    def _version_v(self, table: BurnTable | None) -> BurnTable | None:
        """Version V of the tenant's table in force (the default one has no versions)."""
        if table is None or table.burn_table_id == DEFAULT_BURN_TABLE_ID:
            return table
        return self.versions.get((table.burn_table_id, self.version))


class Rerater:
    """Feed one partition's records in offset order (`feed`), then read `outcome`."""

    def __init__(self, partition: int, selection: Selection, decode: Callable[[bytes], dict], rates: Rates,
                 charged: Mapping[str, Charged | tuple[Charged, ...]], run_id: str, keep_adjustments: bool = True,
                 keep_ratings: bool = False):
        """`keep_adjustments`: list what to book (a dry run only needs the totals);
        `keep_ratings`: keep every new rating, for --rebuild-analytics."""
        self.selection = selection
        self.wanted = selection.key_filter()
        self.decode = decode
        self.rates = rates
        self.charged = charged
        self.run_id = run_id
        self.keep_adjustments = keep_adjustments
        self.keep_ratings = keep_ratings
        # event id -> the bytes of its first record, and whether that record's time is in the range
        self.first: dict[str, tuple[bytes, bool]] = {}
        self.outcome = PartitionOutcome(partition)

    def feed(self, key: bytes | None, value: bytes) -> None:
        self.outcome.read += 1
        if not self.wanted(key):
            return
        try:
            record = self.decode(value)
        except ValueError:
            return  # the pipeline sent it to the DLQ as decode_error: never charged
        s = self.selection
        if record["customer_id"] != s.customer_id or (s.user_ids and record["user_id"] not in s.user_ids):
            return
        event_id = record["event_id"]
        first = self.first.get(event_id)
        if first is not None:  # a copy: of an event in the range, it is counted
            first_value, in_range = first
            if in_range:
                totals = self._totals(record["user_id"])
                if copy_outcome(body_hash(self.decode(first_value)), record) == DUPLICATE:
                    totals.duplicates += 1
                else:
                    totals.conflicts += 1
            return
        in_range = s.start <= record["timestamp"] < s.end
        self.first[event_id] = (value, in_range)
        if in_range:
            totals = self._totals(record["user_id"])
            totals.events += 1
            self._compare(record, totals)

    def _totals(self, user_id: str) -> UserTotals:
        totals = self.outcome.users.get(user_id)
        if totals is None:
            totals = self.outcome.users[user_id] = UserTotals()
        return totals

    def _compare(self, record: dict, totals: UserTotals) -> None:
        charged = self._charged(record)
        if charged is None:
            totals.uncharged += 1
            return
        try:
            result = self.rates.rate(record)
        except NoRate:
            totals.unrateable += 1
            return
        totals.charged += charged.before
        totals.rerated += result.credits
        if self.keep_ratings:
            self.outcome.rerated[record["event_id"]] = result
        if result.credits != charged.before:
            totals.adjusted += 1
        to_book = result.credits - charged.before - charged.booked
        if to_book and self.keep_adjustments:
            self.outcome.adjustments.append(Adjustment(
                self.run_id, record["customer_id"], record["event_id"], charged.wallet_id, record["user_id"], -to_book,
                charged.booked_count))

    def _charged(self, record: dict) -> Charged | None:
        found = self.charged.get(record["event_id"])
        if found is None or isinstance(found, Charged):
            return found
        # The same event id charged on several wallets (reused by another user): this record's
        # is among the wallets it could have been routed to.
        candidates = wallet_ids.candidates(record["customer_id"], record["user_id"], record["team_id"], ALL_LEVELS)
        return next((c for c in found if c.wallet_id in candidates), None)
