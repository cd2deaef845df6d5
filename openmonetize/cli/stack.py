"""`openmonetize stack ...` and `openmonetize migrate`: the local stack (deploy/local_stack/) and the
schema migrations it applies."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
import orjson

from openmonetize.cli.root import Group
from openmonetize.settings import get_settings


@click.group(cls=Group)
def stack() -> None:
    """Run the local stack: Kafka, Postgres, ClickHouse (embedded), the API and the worker."""


def _stack():
    from deploy.local_stack.stack import Stack

    return Stack(get_settings())


@stack.command()
def up() -> None:
    """Install what is missing, start every service and wait until each answers. Idempotent."""
    started = time.monotonic()
    _stack().up()
    click.echo(f"stack is up in {time.monotonic() - started:.1f}s; `openmonetize stack env` prints its URLs", err=True)


@stack.command()
def down() -> None:
    """Stop everything the stack started (found by PID files). Data is kept."""
    _stack().down()


@stack.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead of a table.")
def status(as_json: bool) -> None:
    """Show each service's state, then how far behind each consumer group of the pipeline is
    (worker, sinks: committed offsets against the high watermarks, and how many consumers each
    group has). Exit code 3 when a managed service is not running."""
    from deploy.local_stack.processes import StackError
    from openmonetize import consumer_lag

    stack = _stack()
    states = stack.status()
    try:
        lags, lag_error = stack.consumer_lag(), None
    except StackError as exc:
        lags, lag_error = [], str(exc)
    if as_json:
        click.echo(orjson.dumps({"services": states, "consumer_lag": [lag.as_dict() for lag in lags],
                                 "consumer_lag_error": lag_error}).decode())
    else:
        width = max(map(len, states))
        for name, state in states.items():
            click.echo(f"{name.ljust(width)}  {state}")
        click.echo("")
        click.echo(f"consumer lag: {lag_error}" if lag_error else consumer_lag.table(lags))
    managed = get_settings().services
    if any(not states[name].startswith("running") for name in states if name in managed):
        sys.exit(3)


@stack.command()
@click.option("--export", "export", is_flag=True, help="Prefix each line with `export ` for `eval`.")
def env(export: bool) -> None:
    """Print KEY=VALUE lines (KAFKA_BOOTSTRAP, DATABASE_URL, CLICKHOUSE_URL, API_URL, ...)."""
    for key, value in _stack().env().items():
        click.echo(f"{'export ' if export else ''}{key}={value}")


@stack.command(name="logs")
@click.argument("service")
@click.option("-n", "--lines", default=50, show_default=True, help="How many of the last lines to show.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines (Ctrl-C to stop).")
def logs_command(service: str, lines: int, follow: bool) -> None:
    """Show the log of SERVICE (kafka, postgres, supervisor, clickhouse, api, worker, sink-ledger, sink-clickhouse)."""
    path = Path(_stack().log_file(service))
    if not path.exists():
        raise click.ClickException(f"no log yet at {path}")
    with open(path, errors="replace") as fh:
        for line in fh.readlines()[-lines:]:
            click.echo(line, nl=False)
        while follow:
            line = fh.readline()
            if line:
                click.echo(line, nl=False)
            else:
                time.sleep(0.25)


@click.command()
@click.option("--only", type=click.Choice(["postgres", "clickhouse"]), help="Migrate one database only.")
def migrate(only: str | None) -> None:
    """Apply pending Postgres and ClickHouse schema migrations. Safe to rerun."""
    stack = _stack()
    if only in (None, "postgres"):
        click.echo(f"postgres: {stack.migrate_postgres()}")
    if only in (None, "clickhouse"):
        click.echo(f"clickhouse: {stack.migrate_clickhouse()}")
