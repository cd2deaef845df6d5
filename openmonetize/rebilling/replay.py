"""One rebilling run, start to end: guard rails → lock → settle → read and re-rate → book → record.

The steps and why they are in this order are in the package docstring; the parts are
`source` (Kafka), `rerate` (pure), `ledger_state` and `booking` (Postgres, wallet.commands),
`analytics` (ClickHouse) and openmonetize/stores/replay_runs.py (the replay_runs record and the
tenant lock).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import psycopg

from openmonetize.analytics import rollups
from openmonetize.billing import model_names
from openmonetize.billing.burn_tables import BurnTable
from openmonetize.catalog.index import CatalogIndex
from openmonetize.catalog.json_codec import decode as decode_catalog
from openmonetize.catalog.records import BurnTableRecord
from openmonetize.rebilling import analytics, booking, ledger_state, source
from openmonetize.rebilling.codecs import replay_codecs
from openmonetize.rebilling.rerate import Adjustment, PartitionOutcome, Rates, Rerater, Selection, UserTotals
from openmonetize.settings import Settings
from openmonetize.stores import replay_runs as runs
from openmonetize.topic_reader import read_to_end
from schemas.topics import topics


# The CLI option of each request field, for messages.
OPTIONS = {"customer_id": "--customer", "user_ids": "--user", "from": "--from", "to": "--to",
           "burn_table_version": "--burn-table-version", "rebuild_analytics": "--rebuild-analytics", "run_id": "--run-id"}


class ReplayRefused(ValueError):
    """A parameter or a guard rail refuses the run: `problems` are (field, reason) pairs, the
    message names the CLI option of each."""

    def __init__(self, problems: list[tuple[str, str]]):
        super().__init__("; ".join(f"{OPTIONS.get(field, field)}: {reason}" for field, reason in problems))
        self.problems = problems


@dataclass(frozen=True)
class ReplayRequest:
    customer_id: str
    start: datetime
    end: datetime
    user_ids: tuple[str, ...] = ()
    burn_table_version: int | None = None
    apply: bool = False
    rebuild_analytics: bool = False
    force: bool = False

    def problems(self, settings: Settings) -> list[tuple[str, str]]:
        """Every problem as (field, reason); empty: the request may run."""
        found = []
        if not self.customer_id:
            found.append(("customer_id", "required"))
        for name, at in (("from", self.start), ("to", self.end)):
            if at.tzinfo is None:
                found.append((name, "must carry a timezone"))
        if not found and self.end <= self.start:
            found.append(("to", f"must be after from ({self.start.isoformat()})"))
        widest = timedelta(days=settings.replay_max_range_days)
        if not found and self.end - self.start > widest and not self.force:
            found.append(("from", f"the range is {(self.end - self.start) / timedelta(days=1):g} days, wider than "
                                  f"REPLAY_MAX_RANGE_DAYS ({settings.replay_max_range_days}): narrow it, or force it "
                                  "(--force)"))
        if self.burn_table_version is not None and self.burn_table_version < 1:
            found.append(("burn_table_version", "must be >= 1"))
        if self.rebuild_analytics and not self.apply:
            found.append(("rebuild_analytics", "rewrites ClickHouse, so it needs --yes (a dry run changes nothing)"))
        return found


class Progress:
    """What a run reports while it works; the CLI draws it, the API ignores it."""

    def phase(self, text: str) -> None:
        pass

    def read(self, done: int, total: int) -> None:
        pass


def execute(settings: Settings, request: ReplayRequest, run_id: str | None = None, requested_by: str = "cli",
            progress: Progress | None = None) -> runs.Run:
    """Run (or resume, with the `run_id` of an earlier one) a replay; the recorded run."""
    problems = request.problems(settings)
    if problems:
        raise ReplayRefused(problems)
    progress = progress or Progress()
    asked = runs.Run(run_id or runs.new_run_id(), request.customer_id, sorted(set(request.user_ids)), request.start,
                     request.end, request.burn_table_version, "apply" if request.apply else "dry_run",
                     request.rebuild_analytics, "queued", requested_by)
    with psycopg.connect(settings.database_url, connect_timeout=10) as conn:
        stored = runs.get(conn, asked.run_id)
        conn.commit()
        if stored is not None:
            try:
                runs.check_same(stored, asked)
            except runs.RunMismatch as exc:
                raise ReplayRefused([("run_id", str(exc))]) from None
            run = stored
        else:
            run = runs.create(conn, asked)
        try:
            with runs.tenant_lock(settings.database_url, run.customer_id, run.run_id):
                _locked(settings, conn, run, request, progress)
        except runs.ReplayBusy as exc:
            runs.mark(conn, run.run_id, "failed", str(exc))
            raise
        return runs.get(conn, run.run_id)


def _locked(settings: Settings, conn: psycopg.Connection, run: runs.Run, request: ReplayRequest,
            progress: Progress) -> None:
    """The run under its tenant's lock, recorded as running, then completed, failed or interrupted."""
    runs.mark(conn, run.run_id, "running")
    started = time.monotonic()
    try:
        _steps(settings, conn, run, request, progress)
    except KeyboardInterrupt:
        conn.rollback()
        runs.mark(conn, run.run_id, "interrupted", "interrupted (Ctrl-C); resume with the same --run-id")
        raise
    except Exception as exc:
        conn.rollback()
        runs.mark(conn, run.run_id, "failed", f"{type(exc).__name__}: {exc}")
        raise
    run.elapsed_s = time.monotonic() - started
    runs.save_totals(conn, run)
    runs.mark(conn, run.run_id, "completed")


def _steps(settings: Settings, conn: psycopg.Connection, run: runs.Run, request: ReplayRequest,
           progress: Progress) -> None:
    spec = topics(settings)
    codecs = replay_codecs(settings, spec)
    # The catalog is read while the ledger is (one waits on Kafka and Python, the other on
    # Postgres); a run that books waits for it first: a version it refuses must settle nothing.
    catalog = _Background(lambda: (load_catalog(settings), model_names.warm()))
    if request.apply:
        progress.phase("catalog")
        index, versions = _checked_catalog(catalog, run, request)
    parts = source.plan(settings.kafka_bootstrap, spec.usage_events.name, run.range_from, run.range_to,
                        timedelta(seconds=settings.event_max_age_s), timedelta(seconds=settings.event_max_future_s),
                        source.topic_retention_ms(settings.kafka_bootstrap, spec.usage_events.name,
                                                  settings.usage_events_retention_ms))
    if request.apply:
        progress.phase("settling adjustments in flight")
        booking.settle(conn, settings.kafka_bootstrap, spec.wallet_commands.name, run.customer_id,
                       settings.replay_ledger_wait_s, codecs.wallet_command.decode)
    progress.phase("waiting for the ledger sink")
    ledger_state.wait_for_ledger_sink(conn, settings.kafka_bootstrap, spec.ledger_entries.name,
                                      settings.ledger_sink_group, settings.replay_ledger_wait_s,
                                      codecs.ledger_entry.decode)
    progress.phase("reading the ledger")
    charged = ledger_state.charged(conn, run.run_id, run.customer_id, run.range_from, run.range_to)
    conn.commit()
    if not request.apply:
        progress.phase("catalog")
        index, versions = _checked_catalog(catalog, run, request)

    selection = Selection(run.customer_id, run.range_from, run.range_to, frozenset(run.user_ids))
    rates = Rates(index, run.customer_id, versions, request.burn_table_version)

    def read_partition(part: source.PartitionRange, counter) -> PartitionOutcome:
        rerater = Rerater(part.partition, selection, codecs.usage_event, rates, charged, run.run_id,
                          keep_adjustments=request.apply, keep_ratings=request.rebuild_analytics)

        def advanced(n: int) -> None:
            with counter.get_lock():
                counter.value += n

        for batch in source.batches(settings.kafka_bootstrap, spec.usage_events.name, part, advanced):
            rerater.feed_many(batch)
        return rerater.outcome

    total = sum(part.size for part in parts)
    progress.phase("re-rating")
    outcomes = source.run_parallel([p for p in parts if p.size], read_partition,
                                   source.workers(settings.replay_workers, len(parts)),
                                   lambda done: progress.read(done, total))
    adjustments = summarise(run, outcomes)
    if request.apply and adjustments:
        progress.phase(f"booking {len(adjustments)} adjustments")
        runs.save_commands_from(conn, run.run_id, booking.end_offsets(settings.kafka_bootstrap, spec.wallet_commands.name))
        booking.record(conn, adjustments)
        booking.send(settings.kafka_bootstrap, spec.wallet_commands.name, codecs.wallet_command.encode, adjustments,
                     settings.kafka_producer_timeout_ms / 1000)
        progress.phase("waiting for the adjustments in the ledger")
        booking.wait_landed(conn, run.customer_id, settings.replay_ledger_wait_s, {a.entry_id for a in adjustments})
    if request.rebuild_analytics:
        progress.phase("rewriting ClickHouse")
        ratings = {}
        for outcome in outcomes:
            ratings.update(outcome.rerated)
        run.rewritten_events = rebuild_analytics(settings, run, ratings)


class _Background:
    """`work()` in a thread of its own; `result()` waits for it and returns or raises what it did."""

    def __init__(self, work):
        self._outcome: tuple = (None, None)
        self._thread = threading.Thread(target=self._run, args=(work,), daemon=True)
        self._thread.start()

    def _run(self, work) -> None:
        try:
            self._outcome = (work(), None)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller of result()
            self._outcome = (None, exc)

    def result(self):
        self._thread.join()
        value, error = self._outcome
        if error is not None:
            raise error
        return value


def _checked_catalog(catalog: _Background, run: runs.Run, request: ReplayRequest
                     ) -> tuple[CatalogIndex, dict[tuple[str, int], BurnTable]]:
    (index, versions), _ = catalog.result()
    if request.burn_table_version is not None and not any(
            t.customer_id == run.customer_id and v == request.burn_table_version for (_, v), t in versions.items()):
        raise ReplayRefused([("burn_table_version", f"tenant {run.customer_id} has no burn table version "
                                                    f"{request.burn_table_version}")])
    return index, versions


def summarise(run: runs.Run, outcomes: list[PartitionOutcome]) -> list[Adjustment]:
    """Fold the partitions' totals into the run (and its per-user lines); the adjustments to book,
    one per command id (an event id charged twice on one wallet counts once)."""
    users: dict[str, UserTotals] = {}
    for outcome in outcomes:
        for user_id, totals in outcome.users.items():
            users.setdefault(user_id, UserTotals()).add(totals)
    overall = UserTotals()
    for totals in users.values():
        overall.add(totals)
    for name in ("events", "duplicates", "conflicts", "uncharged", "unrateable", "adjusted", "charged", "rerated"):
        setattr(run, name, getattr(overall, name))
    run.difference = overall.difference
    run.per_user = [{"user_id": user_id, "events": t.events, "duplicates": t.duplicates, "conflicts": t.conflicts,
                     "uncharged": t.uncharged, "unrateable": t.unrateable, "adjusted": t.adjusted,
                     "charged": t.charged, "rerated": t.rerated, "difference": t.difference}
                    for user_id, t in sorted(users.items())]
    unique: dict[str, Adjustment] = {}
    for outcome in outcomes:
        for adjustment in outcome.adjustments:
            unique.setdefault(adjustment.command_id, adjustment)
    return list(unique.values())


def load_catalog(settings: Settings) -> tuple[CatalogIndex, dict[tuple[str, int], BurnTable]]:
    """The billing catalog as of now (read to its end), and every burn table version by (id, version)."""
    index = CatalogIndex(settings.default_burn_markup)
    versions: dict[tuple[str, int], BurnTable] = {}
    for message in read_to_end(settings.kafka_bootstrap, topics(settings).billing_catalog.name):
        key = message.key().decode()
        record = decode_catalog(message.value()) if message.value() is not None else None
        index.apply(key, record)
        if isinstance(record, BurnTableRecord):
            versions[(record.table.burn_table_id, record.table.version)] = record.table
    return index, versions


def rebuild_analytics(settings: Settings, run: runs.Run, ratings: dict) -> int:
    from openmonetize import clickhouse_client

    client = clickhouse_client.get_client(settings, "writer", database=settings.clickhouse_database,
                                           connect_timeout=10, send_receive_timeout=300)
    try:
        written = analytics.rewrite_events(client, settings.clickhouse_database, run.customer_id, run.range_from,
                                           run.range_to, ratings, datetime.now(timezone.utc))
        # Always: a run resumed after writing its rows but before this finds nothing left to write.
        rollups.rebuild(client, settings.clickhouse_database, run.customer_id, run.range_from, run.range_to)
        return written
    finally:
        client.close()

