"""`openmonetize reconcile`: every wallet's balance against its ledger, in Kafka, Postgres and
ClickHouse (openmonetize/reconcile.py), as a table or JSON."""

from __future__ import annotations

import click

from openmonetize.settings import get_settings


@click.command()
@click.option("--customer", "customer_id", default=None, help="Only this tenant's wallets.")
@click.option("--source", type=click.Choice(["all", "topics", "postgres", "clickhouse", "both"]), default="all",
              show_default=True,
              help="What the balances are compared with: ledger.entries, the Postgres ledger, ClickHouse, or all of "
                   "them (all: Postgres only when its table exists; `both` is an older name of all).")
@click.option("--all", "show_all", is_flag=True, help="List every wallet, not only those that drift.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def reconcile(customer_id: str | None, source: str, show_all: bool, as_json: bool) -> None:
    """Check every wallet: its balance (wallet.balances) must equal the sum of its ledger entries,
    in ledger.entries and in the Postgres ledger (ledger_entries, written by the ledger sink), and
    what the ledger debited for usage must equal the credits of its events in ClickHouse
    (usage_events FINAL, and the usage_daily rollup).

    Prints a table (every wallet with --customer or --all, else those that drift). A ledger
    entry repeated after a crash counts once. Run it when the pipeline and the sinks are idle:
    a balance read while the wallet agent is mid-batch may be ahead of the entries read, and the
    sinks write a batch behind the topics. Exit code 1 when a wallet drifts.
    """
    import orjson

    from openmonetize.reconcile import reconcile as run_reconcile

    report = run_reconcile(get_settings(), customer_id, "all" if source == "both" else source)
    if as_json:
        click.echo(orjson.dumps({
            "wallets": report.wallets, "entries": report.entries, "mismatches": [
                {"wallet_id": m.wallet_id, "balance": m.balance, "ledger_sum": m.ledger_sum, "entries": m.entries,
                 "problem": m.problem, "source": where} for where, m in report.mismatches],
            "sources": report.sources, "postgres_entries": report.postgres_entries,
            "clickhouse_events": report.clickhouse_events}, default=str).decode())
    else:
        shown = [line for line in report.lines if show_all or customer_id or line.problems]
        if shown:
            click.echo(_reconcile_table(shown))
        counts = []
        if report.entries is not None:
            counts.append(f"{report.entries} ledger entries")
        if report.postgres_entries is not None:
            counts.append(f"{report.postgres_entries} Postgres ledger rows")
        if report.clickhouse_events is not None:
            counts.append(f"{report.clickhouse_events} ClickHouse events")
        drifting = sorted({m.wallet_id for _, m in report.mismatches})
        click.echo(f"{report.wallets} wallets, {', '.join(counts)}: "
                   + (f"{len(drifting)} drift: {', '.join(drifting)}" if drifting else "every source agrees"))
    if report.mismatches:
        raise SystemExit(1)


def _reconcile_table(lines) -> str:
    from decimal import Decimal

    from openmonetize.reconcile import plain

    def text(value) -> str:
        return "-" if value is None else plain(value) if isinstance(value, Decimal) else str(value)

    header = ("wallet", "balance", "ledger topic", "ledger postgres", "usage debited", "clickhouse credits",
              "events", "status")
    rows = [header] + [
        (line.wallet_id, text(line.balance), text(line.topic_sum), text(line.postgres_sum), text(line.debited),
         text(line.clickhouse_credits), text(line.clickhouse_events), "; ".join(line.problems) or "ok")
        for line in lines]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1]
                     for row in rows)
