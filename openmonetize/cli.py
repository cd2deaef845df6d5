"""`openmonetize`: the command line of the product. Every level has --help."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
import orjson

from openmonetize import logs
from openmonetize.settings import get_settings


# What the [server] extra brings (pyproject.toml): a core install (producer client, SDK, `produce`)
# has none of them, and a command that needs one says which extra to install.
SERVER_MODULES = frozenset({"faust", "aiokafka", "clickhouse_connect", "psycopg", "psycopg_pool", "fastapi",
                            "starlette", "uvicorn", "uvloop", "genai_prices", "prometheus_client", "aiohttp",
                            "jinja2", "multipart", "cryptography", "lz4", "zstandard", "chdb"})


class _NotInstalled(Exception):
    """Stands for the exception type of a library this install does not have: never raised."""


def _exception_type(module: str, name: str) -> type[BaseException]:
    import importlib

    try:
        return getattr(importlib.import_module(module), name)
    except ModuleNotFoundError:
        return _NotInstalled


class Group(click.Group):
    """Turns the errors an operator can fix (StackError, bad settings, a missing extra) into one clear line."""

    def invoke(self, ctx: click.Context):
        from pydantic import ValidationError

        from deploy.local_stack.processes import StackError
        from openmonetize.catalog.publisher import CatalogPublishError

        from schemas.registry import RegistryError
        from schemas.registry_client import RegistryUnreachable

        postgres_unreachable = _exception_type("psycopg", "OperationalError")
        clickhouse_unreachable = _exception_type("clickhouse_connect.driver.exceptions", "OperationalError")
        try:
            return super().invoke(ctx)
        except (StackError, CatalogPublishError) as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(1)
        except RegistryUnreachable as exc:
            click.secho(f"error: {exc}. Is SCHEMA_REGISTRY_URL right?", fg="red", err=True)
            sys.exit(1)
        except RegistryError as exc:
            click.secho(f"error: the schema registry refused: HTTP {exc.http_status} (error {exc.error_code}) "
                        f"{exc.message}", fg="red", err=True)
            sys.exit(1)
        except postgres_unreachable as exc:
            click.secho(
                f"error: cannot reach Postgres at DATABASE_URL ({str(exc).strip()}). "
                "Is the stack up (`make up`)?",
                fg="red",
                err=True,
            )
            sys.exit(1)
        except clickhouse_unreachable as exc:
            click.secho(
                f"error: cannot reach ClickHouse at CLICKHOUSE_URL ({exc}). Is the stack up (`make up`)?",
                fg="red",
                err=True,
            )
            sys.exit(1)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
            click.secho(f"error: invalid settings: {problems}", fg="red", err=True)
            sys.exit(2)
        except ModuleNotFoundError as exc:
            if (exc.name or "").split(".")[0] not in SERVER_MODULES:
                raise
            extra = "local" if exc.name == "chdb" else "server"
            click.secho(
                f"error: this command needs {exc.name}, which a core install does not have: "
                f"pip install 'openmonetize[{extra}]'",
                fg="red",
                err=True,
            )
            sys.exit(2)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Show the structured log lines of the command itself.")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """OpenMonetize: usage metering and prepaid-credit billing for AI SaaS, on Kafka.

    Settings come from environment variables and an optional .env file (see README);
    `openmonetize stack env` prints the ones other tools need.
    """
    ctx.ensure_object(dict)
    if ctx.invoked_subcommand != "run":
        logs.configure(level="DEBUG" if verbose else "ERROR", fmt="console")


# --- stack ---------------------------------------------------------------------------------
@main.group(cls=Group)
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


# --- admin ---------------------------------------------------------------------------------
@main.group(cls=Group)
def admin() -> None:
    """Operator tasks: tenants and their API keys, provider price snapshots."""


from openmonetize import admin_cli  # noqa: E402 - its groups go under `admin`

admin.add_command(admin_cli.customers)
admin.add_command(admin_cli.api_keys)
admin.add_command(admin_cli.create_customer_alias)


@admin.command("import-prices")
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="Price the dataset as of this day, YYYY-MM-DD (default: today, UTC).")
@click.option("--if-missing", is_flag=True,
              help="Only when no snapshot is stored yet (what `stack up` and a deployment's migrate job do).")
def import_prices(day, if_missing: bool) -> None:
    """Snapshot the bundled genai-prices dataset into provider_prices and publish it to the catalog.

    The version is `genai-<package version>-<date>`; importing the same one again changes
    nothing. The first snapshot is in force from 1970 so that past events are priced too.
    """
    from openmonetize.catalog_admin import import_prices as body

    done = body(get_settings(), day.date() if day else None, only_if_missing=if_missing)
    if done is None:
        click.echo("a snapshot is stored; nothing imported")
        return
    click.echo(f"{done.version}: {done.inserted} new prices, {done.published} published "
               f"(in force from {done.effective_from.isoformat()})")


# --- topics --------------------------------------------------------------------------------
@main.group("topics", cls=Group)
def topics_group() -> None:
    """The project's Kafka topics, as the registry in schemas/topics.py declares them."""


@topics_group.command("create")
def topics_create() -> None:
    """Create the missing topics (partitions KAFKA_PARTITIONS, replication KAFKA_REPLICATION_FACTOR,
    retention and compaction as declared), add partitions where the setting asks for more, and
    align changed configs. Idempotent: what `stack up` does, for a cluster it does not run."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    from openmonetize.kafka_topics import ensure_topics
    from schemas.topics import topics

    settings = get_settings()
    try:
        created = ensure_topics(AdminClient({"bootstrap.servers": settings.kafka_bootstrap}), topics(settings).all())
    except KafkaException as exc:
        raise click.ClickException(f"Kafka at KAFKA_BOOTSTRAP={settings.kafka_bootstrap} did not answer: {exc}") from exc
    click.echo(f"created {', '.join(created)}" if created else "every topic exists")


# --- catalog -------------------------------------------------------------------------------
@main.group(cls=Group)
def catalog() -> None:
    """The billing catalog (burn tables, provider prices, tenant settings) on its Kafka topic."""


@catalog.command()
def sync() -> None:
    """Republish every catalog record from Postgres to the catalog topic. Idempotent; for
    recovery (e.g. a write saved in Postgres whose publication failed)."""
    from openmonetize.catalog_admin import sync as body

    click.echo(f"published {body(get_settings())} catalog records")


# --- produce / loadgen ---------------------------------------------------------------------
@main.command()
@click.option("--file", "-f", "source", required=True, type=click.File("rb"),
              help="NDJSON file of events, one JSON object per line per the event contract; - for stdin.")
@click.option("--customer-id", required=True, help="The tenant the events belong to (events naming another are rejected).")
@click.option("--flush-timeout", default=30.0, show_default=True, help="Seconds to wait for Kafka to acknowledge at the end.")
@click.option("--progress/--no-progress", default=None, help="Progress line on stderr (default: when stderr is a terminal).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
def produce(source, customer_id: str, flush_timeout: float, progress: bool | None, as_json: bool) -> None:
    """Validate NDJSON usage events and produce them straight to Kafka (usage.events).

    Every line is checked against the event contract; a malformed or invalid line is rejected
    with its line number and the others are still sent. Prints read, accepted, rejected (the
    first few with line, field and reason), delivered and failed. Exit code 1 when anything was
    rejected or not delivered.
    """
    from producers.produce_cli import produce as body

    if progress is None:
        progress = sys.stderr.isatty()
    sys.exit(body(get_settings(), source, customer_id, flush_timeout_s=flush_timeout, progress=progress, as_json=as_json))


@main.command()
@click.option("--rate", default=1000.0, show_default=True, help="Events per second to hold (token bucket).")
@click.option("--duration", default=10.0, show_default=True, help="Seconds to run.")
@click.option("--tenants", default=3, show_default=True, help="Tenants loadgen-1..T (created in Postgres when missing).")
@click.option("--users", default=100, show_default=True, help="Users per tenant (a few heavy ones, a third in teams).")
@click.option("--duplicates", default=0.01, show_default=True, help="Share of events re-sent unchanged (same event_id).")
@click.option("--late", default=0.01, show_default=True, help="Share of events dated hours to days back (within 35 days).")
@click.option("--seed", type=int, default=None, help="Random seed (default: random, printed); the same seed gives the same events.")
@click.option("--via", type=click.Choice(["kafka", "http"]), default="kafka", show_default=True,
              help="kafka: UsageProducer to usage.events; http: batches to POST /v1/events/ingest.")
@click.option("--events-file-out", type=click.Path(dir_okay=False), help="Also write every event sent as NDJSON here.")
@click.option("--progress/--no-progress", default=None, help="Progress line on stderr (default: when stderr is a terminal).")
def loadgen(rate: float, duration: float, tenants: int, users: int, duplicates: float, late: float,
            seed: int | None, via: str, events_file_out: str | None, progress: bool | None) -> None:
    """Generate realistic mixed usage events at a steady rate.

    OpenAI, Anthropic and Google models; token, embedding, image, audio and custom events;
    log-normal token counts; a share of duplicates (client retries) and late events. Prints
    progress and a final summary line; exit code 1 when events were rejected or not delivered.
    """
    from producers.produce_cli import loadgen as body

    if rate <= 0 or duration <= 0 or tenants < 1 or users < 1:
        raise click.BadParameter("--rate, --duration, --tenants and --users must be positive")
    if not (0 <= duplicates < 1 and 0 <= late < 1):
        raise click.BadParameter("--duplicates and --late are shares between 0 and 1")
    if progress is None:
        progress = sys.stderr.isatty()
    sys.exit(body(get_settings(), rate=rate, duration_s=duration, tenants=tenants, users=users, duplicates=duplicates,
                  late=late, seed=seed, via=via, events_file_out=events_file_out, progress=progress))


# --- dlq -----------------------------------------------------------------------------------
from schemas.dlq_reasons import KNOWN_REASONS, KNOWN_STAGES  # noqa: E402 - the choices of the options below


@main.command()
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


def _dlq_time():
    from openmonetize.dlq_cli import TimeType

    return TimeType()


def _dlq_ids(values: tuple[str, ...]):
    from openmonetize.dlq.ids import parse_ids

    try:
        return parse_ids(values)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="ID") from exc


def _dlq_run(body, *args, **kwargs) -> None:
    from openmonetize.dlq.kafka_access import DlqError

    try:
        code = body(get_settings(), *args, **kwargs)
    except DlqError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(1)
    sys.exit(code)


def _dlq_selection(reasons, customer, stage, since, until):
    from openmonetize.dlq.entries import Selection

    if since and until and since >= until:
        raise click.BadParameter(f"--since ({since.isoformat()}) must be before --until ({until.isoformat()})")
    return Selection(frozenset(reasons), customer, stage, since, until)


_TIME_HELP = "RFC 3339 (2026-11-26T12:00:00Z; a date is its midnight UTC) or an age (30m, 2h, 7d)."


@main.group(cls=Group)
def dlq() -> None:
    """Inspect and re-drive the dead-letter queue (usage.dlq, TOPIC_USAGE_DLQ).

    Every record the pipeline cannot process lands there with a reason, the stage that refused
    it, where it came from and its original bytes. A DLQ record is named by its place in that
    topic, PARTITION:OFFSET (the ID column of `dlq list`).

    Exit codes: 0 ok, 1 some records failed or were not found (or Kafka/Postgres is out of
    reach), 2 bad usage.
    """


@dlq.command("list")
@click.option("--reason", "reasons", multiple=True, type=click.Choice(KNOWN_REASONS),
              help="Only this reason; repeat for several.")
@click.option("--customer", help="Only records of this customer_id.")
@click.option("--stage", type=click.Choice(KNOWN_STAGES), help="Only records refused at this pipeline stage.")
@click.option("--since", type=_dlq_time(), help=f"Only records that failed at or after this time: {_TIME_HELP}")
@click.option("--until", type=_dlq_time(), help=f"Only records that failed before this time: {_TIME_HELP}")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(min=0),
              help="Show the N earliest matching records (0: all); the summary counts them all.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per record on stdout; the summary on stderr.")
def dlq_list(reasons, customer, stage, since, until, limit: int, as_json: bool) -> None:
    """List DLQ records: a table (id, failed_at, reason, stage, customer, event_id, source,
    detail) or JSON lines, then the number of matching records per reason.

    Reads every partition from the beginning (or from --since, by timestamp) up to the end it
    had when the command started, then stops. Reads only: nothing is committed or changed.
    """
    from openmonetize.dlq_cli import list_records

    _dlq_run(list_records, _dlq_selection(reasons, customer, stage, since, until), limit, as_json)


@dlq.command("show")
@click.argument("ids", metavar="ID [ID...]", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per record.")
def dlq_show(ids: tuple[str, ...], as_json: bool) -> None:
    """Show DLQ records in full, by ID (PARTITION:OFFSET, from `dlq list`).

    The original value is decoded with the schema registry when it is a usage event, a wallet
    command or a routed debit; otherwise (e.g. a decode_error) it is shown in base64 and hex with
    the reason it does not decode. Also shows whether the record has been retried before.
    """
    from openmonetize.dlq_cli import show_records

    _dlq_run(show_records, _dlq_ids(ids), as_json)


@dlq.command("retry")
@click.argument("ids", metavar="[ID...]", nargs=-1)
@click.option("--reason", "reasons", multiple=True, type=click.Choice(KNOWN_REASONS),
              help="Retry every record with this reason (instead of IDs); repeat for several.")
@click.option("--customer", help="With --reason: only records of this customer_id.")
@click.option("--stage", type=click.Choice(KNOWN_STAGES), help="With --reason: only records refused at this stage.")
@click.option("--since", type=_dlq_time(), help=f"With --reason: only records that failed at or after this time: {_TIME_HELP}")
@click.option("--until", type=_dlq_time(), help=f"With --reason: only records that failed before this time: {_TIME_HELP}")
@click.option("--max-retries", default=3, show_default=True, type=click.IntRange(min=1),
              help="Skip records already re-driven this many times.")
@click.option("--dry-run", is_flag=True, help="Show what would be retried; produce nothing.")
@click.option("--yes", is_flag=True, help="Really re-produce the records.")
@click.option("--progress/--no-progress", default=None, help="Progress line on stderr (default: when stderr is a terminal).")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as one JSON object.")
def dlq_retry(ids, reasons, customer, stage, since, until, max_retries: int, dry_run: bool, yes: bool,
              progress: bool | None, as_json: bool) -> None:
    """Re-drive DLQ records into the pipeline: by ID, or every record matching --reason
    (narrowed by --customer, --stage, --since, --until). Needs --dry-run or --yes.

    Each record's ORIGINAL key and value bytes are produced again to its source topic (only the
    pipeline's input topics: usage.events, wallet.commands, wallet.debits; others are refused),
    acks=all, idempotent, partitioned by key like every producer of the project, with the
    headers openmonetize-dlq-retry-of (the DLQ id) and openmonetize-dlq-retry-count. The command
    waits for every acknowledgement, then prints how many were retried, failed and skipped.

    Retrying is safe to repeat: the pipeline dedupes by event id and command id, so a record
    that was in fact applied is not charged twice. A record that keeps failing comes back to the
    DLQ; once it has been re-driven --max-retries times it is skipped, so it cannot loop forever.

    Exit code 1 when a record could not be retried (not found, refused, not acknowledged);
    records skipped at the retry limit do not count as failures.
    """
    from openmonetize.dlq_cli import progress_default, retry_records

    if dry_run == yes:
        raise click.UsageError("give --dry-run to see what would be retried, or --yes to retry")
    if ids and reasons:
        raise click.UsageError("give IDs or --reason, not both")
    if not ids and not reasons:
        raise click.UsageError("give the IDs to retry (see `openmonetize dlq list`) or --reason R to retry by reason")
    if ids and (customer or stage or since or until):
        raise click.UsageError("--customer, --stage, --since and --until narrow --reason; with IDs, give only IDs")
    parsed = _dlq_ids(ids)
    selection = _dlq_selection(reasons, customer, stage, since, until)
    _dlq_run(retry_records, parsed, selection, max_retries, dry_run, progress_default(progress), as_json)


# --- migrate -------------------------------------------------------------------------------
@main.command()
@click.option("--only", type=click.Choice(["postgres", "clickhouse"]), help="Migrate one database only.")
def migrate(only: str | None) -> None:
    """Apply pending Postgres and ClickHouse schema migrations. Safe to rerun."""
    stack = _stack()
    if only in (None, "postgres"):
        click.echo(f"postgres: {stack.migrate_postgres()}")
    if only in (None, "clickhouse"):
        click.echo(f"clickhouse: {stack.migrate_clickhouse()}")


# --- proxy ---------------------------------------------------------------------------------
@main.command()
@click.option("--port", type=int, help="Listen port (default PROXY_PORT: 18082).")
@click.option("--openai-base-url", help="Where OpenAI calls go (default PROXY_OPENAI_BASE_URL).")
@click.option("--anthropic-base-url", help="Where Anthropic calls go (default PROXY_ANTHROPIC_BASE_URL).")
@click.option("--gemini-base-url", help="Where Gemini calls go (default PROXY_GEMINI_BASE_URL).")
def proxy(port: int | None, openai_base_url: str | None, anthropic_base_url: str | None, gemini_base_url: str | None) -> None:
    """Run the AI proxy in the foreground: point an OpenAI, Anthropic or Gemini SDK's base URL at it
    and add the X-OM-* headers; each call is checked against the user's credits and billed to them."""
    _configure_process_logs("proxy")
    from api.proxy.server import run as serve

    given = {"proxy_port": port, "proxy_openai_base_url": openai_base_url,
             "proxy_anthropic_base_url": anthropic_base_url, "proxy_gemini_base_url": gemini_base_url}
    serve(get_settings().model_copy(update={name: value for name, value in given.items() if value is not None}))


# --- run -----------------------------------------------------------------------------------
@main.group(cls=Group)
def run() -> None:
    """Run one long-running process in the foreground (what `stack up` supervises;
    also the entry point for containers)."""


def _configure_process_logs(service: str) -> None:
    from openmonetize import metrics

    settings = get_settings()
    logs.configure(level=settings.log_level, fmt=settings.log_format, service=service)
    metrics.describe_process(service)


@run.command("api")
def run_api() -> None:
    """The HTTP API on API_HOST:API_PORT."""
    _configure_process_logs("api")
    from api.server import run as serve

    serve()


@run.command("worker")
def run_worker() -> None:
    """The stream-processing worker (Faust); web and /metrics on WORKER_WEB_PORT."""
    _configure_process_logs("worker")
    from stream_processors.worker import run as serve

    serve()


@run.command("sink-ledger")
def run_sink_ledger() -> None:
    """The Postgres ledger sink: ledger.entries → ledger_entries; /metrics on LEDGER_SINK_METRICS_PORT."""
    _configure_process_logs("sink-ledger")
    from sinks.ledger_postgres import run as serve

    serve(get_settings())


@run.command("sink-clickhouse")
def run_sink_clickhouse() -> None:
    """The ClickHouse sink: usage.rated → usage_events; /metrics on CLICKHOUSE_SINK_METRICS_PORT."""
    _configure_process_logs("sink-clickhouse")
    from sinks.usage_clickhouse import run as serve

    serve(get_settings())


@run.command("proxy")
def run_proxy() -> None:
    """The AI proxy on PROXY_HOST:PROXY_PORT (`openmonetize proxy` with the settings as they are)."""
    _configure_process_logs("proxy")
    from api.proxy.server import run as serve

    serve(get_settings())


@run.command("clickhouse")
def run_clickhouse() -> None:
    """The embedded ClickHouse engine (chdb) on ClickHouse's HTTP interface, CLICKHOUSE_PORT."""
    from deploy.clickhouse_http.__main__ import main as serve

    settings = get_settings()
    serve([
        "--host", "127.0.0.1",
        "--port", str(settings.clickhouse_port),
        "--path", str(settings.stack_dir / "clickhouse"),
        "--log-level", settings.log_level,
        "--log-format", settings.log_format,
    ])


@run.command("supervisor")
def run_supervisor() -> None:
    """Start the API, the worker and the ClickHouse front, and restart any that dies."""
    _configure_process_logs("supervisor")
    from deploy.local_stack.stack import Stack
    from deploy.local_stack.supervisor import Supervisor

    stack = Stack(get_settings())
    Supervisor(get_settings(), stack.supervised, stack.child_env()).run()


# --- replay --------------------------------------------------------------------------------
from openmonetize.replay_cli import replay  # noqa: E402 - `openmonetize replay` and `replay list`

main.add_command(replay)

from openmonetize.plans.cli import plans  # noqa: E402 - `openmonetize plans run-due`

main.add_command(plans)


if __name__ == "__main__":
    main()
