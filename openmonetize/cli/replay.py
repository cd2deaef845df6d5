"""`openmonetize replay` and `openmonetize replay list`: the command line of rebilling runs
(openmonetize/rebilling/)."""

from __future__ import annotations

import getpass
import socket
import sys
import time
from decimal import Decimal

import click

from openmonetize.cli.times import TIME_HELP, TimeType
from openmonetize.settings import get_settings


def _plain(value) -> str:
    if isinstance(value, Decimal):
        from openmonetize.reconcile import plain

        return plain(value)
    return str(value)


def _table(header: tuple[str, ...], rows: list[tuple]) -> str:
    cells = [header] + [tuple(_plain(v) for v in row) for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()
                     for row in cells)


class _Bar:
    """A one-line progress bar on stderr: usage.events records read of the range (every tenant's:
    the key filter skips the others unread), events/s, the phase."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.since = time.monotonic()  # the current phase's start: the rate leaves the set-up out
        self.last = ""

    def phase(self, text: str) -> None:
        self.since = time.monotonic()
        if self.enabled:
            self._draw(f"replay: {text}…")

    def read(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        elapsed = max(time.monotonic() - self.since, 1e-3)
        share = done / total if total else 1.0
        filled = int(share * 30)
        self._draw(f"replay [{'#' * filled}{'.' * (30 - filled)}] {done:,}/{total:,} events "
                   f"{share:6.1%}  {done / elapsed:,.0f} events/s")

    def _draw(self, line: str) -> None:
        sys.stderr.write("\r" + line.ljust(len(self.last)))
        sys.stderr.flush()
        self.last = line

    def end(self) -> None:
        if self.enabled and self.last:
            sys.stderr.write("\n")
            sys.stderr.flush()


def summary_lines(run) -> list[str]:
    rows = [(u["user_id"], u["events"], Decimal(str(u["charged"])), Decimal(str(u["rerated"])),
             Decimal(str(u["difference"])), u["duplicates"] + u["conflicts"], u["uncharged"], u["unrateable"])
            for u in run.per_user]
    lines = [_table(("user", "events", "charged", "re-rated", "difference", "copies", "uncharged", "unrateable"),
                    rows)] if rows else ["no events of the selection in the range"]
    verb = "booked" if run.mode == "apply" else "would book"
    sign = "extra debit" if run.difference > 0 else "credit back"
    lines.append(
        f"run {run.run_id} ({run.mode}, {run.status}): {run.events:,} events, {run.adjusted:,} re-rated differently; "
        f"charged {_plain(run.charged)}, re-rated {_plain(run.rerated)}: {verb} {_plain(abs(run.difference))} "
        f"credits ({sign if run.difference else 'nothing'}) in {run.elapsed_s or 0:.1f}s"
        + (f", {run.events / run.elapsed_s:,.0f} events/s" if run.elapsed_s else ""))
    skipped = []
    if run.duplicates or run.conflicts:
        skipped.append(f"{run.duplicates + run.conflicts:,} later copies of events (never charged)")
    if run.uncharged:
        skipped.append(f"{run.uncharged:,} events the ledger never charged (see `openmonetize dlq list`)")
    if run.unrateable:
        skipped.append(f"{run.unrateable:,} events the burn table cannot rate now (left as charged)")
    if skipped:
        lines.append("left alone: " + "; ".join(skipped))
    if run.rebuild_analytics:
        lines.append(f"ClickHouse: {run.rewritten_events:,} events rewritten, rollups rebuilt")
    return lines


def run_json(run) -> dict:
    from dataclasses import asdict

    return asdict(run)


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--customer", "customer_id", help="The tenant whose events are re-rated (required for a run).")
@click.option("--user", "user_ids", multiple=True, help="Only this user's events; repeat for several.")
@click.option("--from", "start", type=TimeType(), help=f"Events at or after this time: {TIME_HELP}")
@click.option("--to", "end", type=TimeType(), help=f"Events before this time: {TIME_HELP}")
@click.option("--burn-table-version", type=int,
              help="Rate with this version of the burn table (default: the version in force now at each event's time).")
@click.option("--dry-run", is_flag=True, help="Print what would be booked, per user; change nothing.")
@click.option("--yes", is_flag=True, help="Book the differences.")
@click.option("--run-id", help="Resume this run (after Ctrl-C, a kill or an error; alone, it takes the run's recorded "
                                "options), or name a new one.")
@click.option("--rebuild-analytics", is_flag=True,
              help="Also rewrite the events' ClickHouse rows with the new rating and rebuild the rollups.")
@click.option("--force", is_flag=True, help="Allow a range wider than REPLAY_MAX_RANGE_DAYS.")
@click.option("--progress/--no-progress", default=None, help="Progress bar on stderr (default: when it is a terminal).")
@click.option("--json", "as_json", is_flag=True, help="Print the run record as one JSON object.")
@click.pass_context
def replay(ctx, customer_id, user_ids, start, end, burn_table_version, dry_run, yes, run_id, rebuild_analytics, force,
           progress, as_json) -> None:
    """Re-rate a tenant's usage events of a time range from usage.events, with the burn tables and
    prices in force now (or --burn-table-version), and book the difference with what the ledger
    charged, per event, as adjustment entries through wallet.commands.

    Needs --dry-run (a table per user: events, charged, re-rated, difference; nothing changes) or
    --yes (books it). Every run is recorded (`openmonetize replay list`). Running the same replay
    again books nothing; an interrupted run is resumed with --run-id. Refused: a range wider than
    REPLAY_MAX_RANGE_DAYS without --force, a range older than usage.events keeps, and a second
    replay of a tenant while one runs.

    Exit codes: 0 done, 1 refused or failed, 2 bad usage, 130 interrupted (resume with --run-id).
    """
    if ctx.invoked_subcommand is not None:
        return
    if dry_run == yes:
        raise click.UsageError("give --dry-run to see the differences, or --yes to book them")
    from openmonetize.rebilling.replay import ReplayRequest, execute
    from openmonetize.stores.replay_runs import new_run_id

    if run_id and customer_id is None and start is None and end is None:
        request = _stored_request(run_id, yes, force)
    else:
        for option, value in (("--customer", customer_id), ("--from", start), ("--to", end)):
            if value is None:
                raise click.UsageError(f"{option} is required (or --run-id alone, to resume a recorded run)")
        request = ReplayRequest(customer_id, start, end, tuple(user_ids), burn_table_version, apply=yes,
                                rebuild_analytics=rebuild_analytics, force=force)
    run_id = run_id or new_run_id()
    bar = _Bar(sys.stderr.isatty() if progress is None else progress)
    try:
        run = execute(get_settings(), request, run_id, f"cli:{getpass.getuser()}@{socket.gethostname()}", bar)
    except KeyboardInterrupt:
        bar.end()
        click.secho(f"interrupted: resume with `openmonetize replay --run-id {run_id} {'--yes' if yes else '--dry-run'}`",
                    fg="yellow", err=True)
        sys.exit(130)
    except Exception as exc:
        bar.end()
        _fail(exc)
    bar.end()
    if as_json:
        import orjson

        click.echo(orjson.dumps(run_json(run), default=str).decode())
    else:
        click.echo("\n".join(summary_lines(run)))


def _stored_request(run_id: str, yes: bool, force: bool):
    """The request a recorded run was started with: `--run-id` alone resumes it (its times may
    have been given as ages, which mean something else now)."""
    import psycopg

    from openmonetize.rebilling.replay import ReplayRequest
    from openmonetize.stores import replay_runs as runs

    with psycopg.connect(get_settings().database_url, connect_timeout=10) as conn:
        stored = runs.get(conn, run_id)
    if stored is None:
        raise click.UsageError(f"--run-id {run_id}: no such run; give --customer, --from and --to to start one")
    return ReplayRequest(stored.customer_id, stored.range_from, stored.range_to, tuple(stored.user_ids),
                         stored.burn_table_version, apply=yes, rebuild_analytics=stored.rebuild_analytics, force=force)


def _fail(exc: Exception) -> None:
    """Refusals and the failures an operator can act on are one line; anything else is a bug."""
    from openmonetize.rebilling.booking import BookingError
    from openmonetize.rebilling.ledger_state import LedgerBehind
    from openmonetize.rebilling.replay import ReplayRefused
    from openmonetize.rebilling.source import RetentionError
    from openmonetize.stores.replay_runs import ReplayBusy

    if isinstance(exc, (ReplayRefused, ReplayBusy, RetentionError, LedgerBehind, BookingError)):
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(1)
    raise exc


@replay.command("list")
@click.option("--customer", "customer_id", help="Only this tenant's runs.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1), help="The newest N runs.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per run.")
def replay_list(customer_id, limit, as_json) -> None:
    """The recorded runs, newest first: id, tenant, mode, status, range, events, difference, who."""
    import psycopg

    from openmonetize.stores import replay_runs as runs

    with psycopg.connect(get_settings().database_url, connect_timeout=10) as conn:
        found = runs.listed(conn, customer_id, limit)
    if as_json:
        import orjson

        for run in found:
            click.echo(orjson.dumps(run_json(run), default=str).decode())
        return
    if not found:
        click.echo("no replay runs")
        return
    click.echo(_table(
        ("run", "customer", "mode", "status", "from", "to", "events", "difference", "created", "by"),
        [(r.run_id, r.customer_id, r.mode, r.status, r.range_from.isoformat(), r.range_to.isoformat(), r.events,
          r.difference, r.created_at.isoformat(timespec="seconds"), r.requested_by) for r in found]))
