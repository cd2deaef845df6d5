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

The pass is the replay's hot loop (every record of the tenant), so it reads only the fields it
needs into a `Row` (`AvroCodec.rows`: refuses what the full decode refuses), keeps what rating
needs per (provider, model, event type, unit) for the stretch of time it holds
(`CatalogIndex.rating_inputs`), computes credits in integers of 10^-12 (`rating.fast_units`, the
arithmetic of `rate_fast`) and sums in integers; `rate_event` rates whatever that path leaves to
`rate`. tests/unit/openmonetize/rebilling/test_rerate.py checks it against the per-event
reference (full decode, `rate_event`, Decimal sums) on random streams.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import NamedTuple

from openmonetize import wallet_ids
from openmonetize.billing.burn_tables import BurnTable
from openmonetize.billing.default_burn_table import DEFAULT_BURN_TABLE_ID
from openmonetize.billing.money import ZERO, from_units, to_units
from openmonetize.billing.rating import NoRate, RateParams, RateResult, credit_price_units, fast_units
from openmonetize.billing.wallet import entry_id
from openmonetize.catalog.index import CatalogIndex
from openmonetize.usage_step import DUPLICATE, NOT_IN_BODY_HASH, body_hash, copy_outcome
from schemas.codec import AvroCodec

ALL_LEVELS = ("user", "team", "customer")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


class Row(NamedTuple):
    """What a replay reads of a usage event (`AvroCodec.rows`): the dedupe key, the selection,
    the routing candidates and RateParams' units; the timestamp in microseconds from the epoch."""

    event_id: str
    customer_id: str
    user_id: str
    team_id: str | None
    event_type: str
    provider: str | None
    model: str | None
    input_tokens: int | None
    output_tokens: int | None
    cached_input_tokens: int | None
    image_count: int | None
    image_size: str | None
    quality: str | None
    unit_type: str | None
    quantity: Decimal | None
    timestamp: int
    # Where the fields body_hash ignores begin (received_at, source: last in the schema): two
    # records whose bytes before it are equal have the same body hash. None: compare decoded.
    prefix: int | None

    def params(self) -> RateParams:
        return RateParams(self.event_type, micros_time(self.timestamp), *self[5:15])


def row_decoder(codec: AvroCodec) -> Callable[[bytes], Row]:
    """usage.events records → Rows (DecodeError where the whole decode fails)."""
    names = [f["name"] for f in codec.raw_schema["fields"]]
    tail = len(names)
    while tail and names[tail - 1] in NOT_IN_BODY_HASH:
        tail -= 1
    if tail == len(names):  # a field after them that the hash reads: no prefix to compare
        return codec.rows(Row._fields[:-1], lambda *values: Row(*values, None)).decode
    return codec.rows(Row._fields[:-1], Row, offset_of=names[tail]).decode


def micros(at: datetime) -> int:
    return (at - _EPOCH) // _MICROSECOND


def micros_time(n: int) -> datetime:
    return _EPOCH + timedelta(microseconds=n)


class Charged(NamedTuple):
    """What the ledger holds for one event on the wallet it was charged to (credits, > 0 costs).
    A named tuple: a run builds one per event of the range, and these are cheap to make."""

    wallet_id: str
    before: Decimal  # usage_debit and adjustments booked by other runs
    booked: Decimal = ZERO  # adjustments this run already booked (a resumed run)
    booked_count: int = 0


class LedgerCharges:
    """What the ledger charged, by event id, as the pass looks it up once per event: the common
    case (one usage debit, on one wallet, never adjusted) in two plain dicts, the debit in units
    of 10^-12; an event id adjusted since or charged on several wallets as its `Charged` (a
    tuple of them for several wallets) in `others`."""

    def __init__(self, units: dict[str, int], wallets: dict[str, str],
                 others: dict[str, Charged | tuple[Charged, ...]]):
        self.units = units
        self.wallets = wallets
        self.others = others

    @classmethod
    def of(cls, charged: Mapping[str, Charged | tuple[Charged, ...]]) -> LedgerCharges:
        units, wallets, others = {}, {}, {}
        for event_id, found in charged.items():
            if isinstance(found, Charged) and not found.booked and not found.booked_count:
                units[event_id], wallets[event_id] = _units(found.before), found.wallet_id
            else:
                others[event_id] = found
        return cls(units, wallets, others)

    def __len__(self) -> int:
        return len(self.units) + len(self.others)

    def get(self, event_id: str) -> Charged | tuple[Charged, ...] | None:
        """As a `Charged` mapping would answer (tests, tools); the pass reads the dicts."""
        found = self.others.get(event_id)
        if found is None and event_id in self.units:
            return Charged(self.wallets[event_id], from_units(self.units[event_id]))
        return found


def _units(amount: Decimal) -> int:
    units = to_units(amount)
    if units is None:
        raise ValueError(f"{amount} has more than 12 decimal places: not a ledger amount")
    return units


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
    force now at its time, or version V of that table.

    `credits` is the pass's entry point: per (provider, model, event type, unit), the inputs
    `rate_event` would take (`CatalogIndex.rating_inputs`, the table chosen, the rule, the
    price) are looked up once for the stretch of event times they hold, then each event costs
    `fast_units`; an event that path leaves to `rate` is rated by `rate_event` itself."""

    def __init__(self, index: CatalogIndex, customer_id: str, versions: Mapping[tuple[str, int], BurnTable],
                 version: int | None):
        self.index = index
        self.customer_id = customer_id
        self.versions = versions
        self.version = version
        self._choose = None if version is None else self._version_v
        self._plans: dict[tuple, list[tuple[int, int, tuple | None]]] = {}

    def rate(self, params: RateParams) -> RateResult:
        """Raises NoRate."""
        return self.index.rate_event(self.customer_id, params, self._choose).result

    def credits(self, row: Row) -> int:
        """The event's credits in units of 10^-12, as `rate(row.params()).credits`; raises NoRate."""
        at = row.timestamp
        spans = self._plans.get((row.provider, row.model, row.event_type, row.unit_type))
        plan = None
        if spans is not None:
            for since, until, found in spans:
                if since <= at < until:
                    plan = found
                    break
            else:
                spans = None
        if spans is None:
            plan = self._plan(row)
        if plan is None:
            raise NoRate(f"no burn table or rule for {row.event_type} {row.provider}/{row.model}")
        units = fast_units(row, *plan)
        if units is None:  # what rate_fast leaves to `rate`
            units = (_units(self.rate(row.params()).credits),)
        return units[0]

    def _plan(self, row: Row) -> tuple | None:
        """(rule, price, credit price in units) for the row's stretch of time, remembered; None
        when there is no table or no rule (`rate_event` raises NoRate)."""
        at = micros_time(row.timestamp)
        (found, table, credit_price), since, until = self.index.rating_inputs(self.customer_id, row.provider,
                                                                               row.model, at)
        if self._choose is not None:
            table = self._choose(table)
        rule = table.rule_for(row.event_type, row.model, row.unit_type) if table is not None else None
        plan = None if rule is None else (rule[1], found.price if found is not None else None,
                                          credit_price_units(credit_price))
        key = (row.provider, row.model, row.event_type, row.unit_type)
        self._plans.setdefault(key, []).append((micros(since), micros(until), plan))
        return plan

    def _version_v(self, table: BurnTable | None) -> BurnTable | None:
        """Version V of the tenant's table in force (the default one has no versions)."""
        if table is None or table.burn_table_id == DEFAULT_BURN_TABLE_ID:
            return table
        return self.versions.get((table.burn_table_id, self.version))


# A user's totals while the pass runs: counts, then the charged and re-rated credits in units.
EVENTS, DUPLICATES, CONFLICTS, UNCHARGED, UNRATEABLE, ADJUSTED, CHARGED, RERATED = range(8)


class Rerater:
    """Feed one partition's records in offset order (`feed_many`, `feed`), then read `outcome`."""

    def __init__(self, partition: int, selection: Selection, codec: AvroCodec, rates: Rates,
                 charged: LedgerCharges | Mapping[str, Charged | tuple[Charged, ...]], run_id: str,
                 keep_adjustments: bool = True, keep_ratings: bool = False):
        """`codec`: usage.events' (rows for every record, whole records for a copy's body hash);
        `keep_adjustments`: list what to book (a dry run only needs the totals);
        `keep_ratings`: keep every new rating, for --rebuild-analytics."""
        self.selection = selection
        self.wanted = selection.key_filter()
        self.codec = codec
        self.row = row_decoder(codec)
        self.rates = rates
        self.charged = charged if isinstance(charged, LedgerCharges) else LedgerCharges.of(charged)
        self.run_id = run_id
        self.keep_adjustments = keep_adjustments
        self.keep_ratings = keep_ratings
        self.start, self.end = micros(selection.start), micros(selection.end)
        # event id -> the bytes of its first record, whether its time is in the range, its prefix
        self.first: dict[str, tuple[bytes, bool, int | None]] = {}
        self._users: dict[str, list] = {}
        self._outcome = PartitionOutcome(partition)

    @property
    def outcome(self) -> PartitionOutcome:
        """The partition's outcome so far (the totals as UserTotals, amounts in Decimal)."""
        self._outcome.users = {user_id: UserTotals(*t[:CHARGED], from_units(t[CHARGED]), from_units(t[RERATED]))
                               for user_id, t in self._users.items()}
        return self._outcome

    def feed(self, key: bytes | None, value: bytes) -> None:
        self.feed_many(((key, value),))

    def feed_many(self, records: Iterable[tuple[bytes | None, bytes]]) -> None:
        """(key, value) of records in offset order."""
        wanted, decode, first, users, outcome = self.wanted, self.row, self.first, self._users, self._outcome
        customer_id, user_ids, start, end = self.selection.customer_id, self.selection.user_ids, self.start, self.end
        read = 0
        for key, value in records:
            read += 1
            if not wanted(key):
                continue
            try:
                row = decode(value)
            except ValueError:
                continue  # the pipeline sent it to the DLQ as decode_error: never charged
            if row.customer_id != customer_id or (user_ids and row.user_id not in user_ids):
                continue
            event_id = row.event_id
            seen = first.get(event_id)
            if seen is not None:  # a copy: of an event in the range, it is counted
                first_value, in_range, prefix = seen
                if in_range:
                    totals = users.get(row.user_id) or users.setdefault(row.user_id, [0, 0, 0, 0, 0, 0, 0, 0])
                    if prefix is not None and prefix == row.prefix and value[:prefix] == first_value[:prefix] or \
                            copy_outcome(body_hash(self.codec.decode(first_value)), self.codec.decode(value)) == DUPLICATE:
                        totals[DUPLICATES] += 1
                    else:
                        totals[CONFLICTS] += 1
                continue
            in_range = start <= row.timestamp < end
            first[event_id] = (value, in_range, row.prefix)
            if in_range:
                totals = users.get(row.user_id) or users.setdefault(row.user_id, [0, 0, 0, 0, 0, 0, 0, 0])
                totals[EVENTS] += 1
                self._compare(row, totals)
        outcome.read += read

    def _compare(self, row: Row, totals: list) -> None:
        charged = self.charged
        other = charged.others.get(row.event_id) if charged.others else None
        if other is None:
            before = charged.units.get(row.event_id)
            if before is None:
                totals[UNCHARGED] += 1
                return
            booked = booked_count = 0
        else:
            found = self._pick(other, row)
            if found is None:
                totals[UNCHARGED] += 1
                return
            before, booked, booked_count = _units(found.before), _units(found.booked), found.booked_count
        try:
            if self.keep_ratings:
                result = self.rates.rate(row.params())
                self._outcome.rerated[row.event_id] = result
                credits = _units(result.credits)
            else:
                credits = self.rates.credits(row)
        except NoRate:
            totals[UNRATEABLE] += 1
            return
        totals[CHARGED] += before
        totals[RERATED] += credits
        if credits != before:
            totals[ADJUSTED] += 1
        to_book = credits - before - booked
        if to_book and self.keep_adjustments:
            wallet_id = charged.wallets[row.event_id] if other is None else found.wallet_id
            self._outcome.adjustments.append(Adjustment(
                self.run_id, row.customer_id, row.event_id, wallet_id, row.user_id, from_units(-to_book),
                booked_count))

    @staticmethod
    def _pick(found: Charged | tuple[Charged, ...], row: Row) -> Charged | None:
        if isinstance(found, Charged):
            return found
        # The same event id charged on several wallets (reused by another user): this record's
        # is among the wallets it could have been routed to.
        candidates = wallet_ids.candidates(row.customer_id, row.user_id, row.team_id, ALL_LEVELS)
        return next((c for c in found if c.wallet_id in candidates), None)
