"""`openmonetize plans run-due`: issue the grants of every subscription period due now."""

from __future__ import annotations

import sys
from datetime import datetime, timezone

import click
import orjson

from openmonetize.cli.times import TimeType
from openmonetize.settings import get_settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def plans() -> None:
    """Plans and subscriptions: the scheduler of their periodic grants."""


@plans.command("run-due")
@click.option("--customer", "customer_id", help="Only this tenant's subscriptions.")
@click.option("--now", "now", type=TimeType(),
              help="Grant the periods started at or before this time instead of now (RFC 3339; a catch-up or a test).")
@click.option("--progress/--no-progress", default=None, help="One line per period on stderr (default: when a terminal).")
@click.option("--json", "as_json", is_flag=True, help="Print the run's summary as one JSON object.")
def run_due_command(customer_id: str | None, now: datetime | None, progress: bool | None, as_json: bool) -> None:
    """Grant each active subscription's periods that have started, once.

    Safe to run at any time, twice, concurrently (with another run or the API processes' own
    periodic run) and after a crash: a period is granted once (its grant commands' ids derive
    from the tenant, the subscription and the period start). Exits 1 when Kafka did not
    acknowledge a grant (those subscriptions stay due: run it again)."""
    from openmonetize.plans.scheduler import run_due, sender_for

    settings = get_settings()
    at = now or datetime.now(timezone.utc)
    show = sys.stderr.isatty() if progress is None else progress

    def on_period(event: dict) -> None:
        if show:
            click.echo(f"{event['outcome']:8} {event['subscription_id']} period {event['period']} "
                       f"({event['period_start']} → {event['period_end']}): {event['credits']} credits to "
                       f"{event['wallet_id']}", err=True)

    send = sender_for(settings)
    try:
        summary = run_due(settings.database_url, send, at, customer_id=customer_id, on_period=on_period)
    finally:
        send.close()
    if as_json:
        click.echo(orjson.dumps(summary.as_dict()).decode())
    else:
        click.echo(f"{summary.subscriptions} subscriptions due at {at.isoformat()}: {summary.periods} periods, "
                   f"{summary.granted} grants ({summary.as_dict()['credits']} credits), {summary.skipped} skipped"
                   + (f", {len(summary.failed)} failed (run again): {' '.join(summary.failed)}" if summary.failed else ""))
    if summary.failed:
        sys.exit(1)
