"""`openmonetize dlq list|show|retry`: inspect and re-drive the dead-letter queue. The reading and
re-driving are in openmonetize/dlq/; here are the options, the tables and the JSON lines. The
bodies return the process exit code: 0 ok, 1 some records failed or were not found (bad usage,
2, is refused by click before)."""

from __future__ import annotations

import base64
import sys
import time
from collections import Counter
from datetime import datetime
from decimal import Decimal

import click
import orjson

from openmonetize.cli.root import Group
from openmonetize.cli.times import TIME_HELP, TimeType
from openmonetize.dlq.entries import DlqEntry, Earliest, Selection
from openmonetize.dlq.ids import DlqId, parse_ids
from openmonetize.dlq.kafka_access import DlqError
from openmonetize.dlq.reader import DlqReader, OriginalDecoder
from openmonetize.dlq.redrive import Redriver, plan
from openmonetize.dlq.retry_rules import RETRY, RETRY_OF_HEADER, retry_count
from openmonetize.dlq_views import entry_json, retry_outcome, session, utf8_or_none
from openmonetize.logs import get_logger
from openmonetize.settings import Settings, get_settings
from schemas.dlq_reasons import KNOWN_REASONS, KNOWN_STAGES

log = get_logger(__name__)

DETAIL_WIDTH = 60
ID_WIDTH = 28  # customer and event ids in the table
HEX_BYTES = 64  # of an undecodable value, shown in hex
PROGRESS_EVERY_S = 0.5


# --- presentation -------------------------------------------------------------------------
def _key_for_humans(key: bytes | None) -> str:
    if key is None:
        return "(none)"
    text = utf8_or_none(key)
    return text if text is not None and text.isprintable() else f"base64:{base64.b64encode(key).decode()}"


def _json_default(value):
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _dumps(obj) -> str:
    return orjson.dumps(obj, default=_json_default, option=orjson.OPT_NON_STR_KEYS).decode()


def _when(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds").replace("+00:00", "Z") if value else "-"


def _cut(text: str | None, width: int) -> str:
    text = (text or "-").replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def _table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    for line in [headers, *rows]:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())


def _list_row(entry: DlqEntry) -> list[str]:
    if entry.record is None:
        return [str(entry.id), "-", "(undecodable)", "-", "-", "-", "-", _cut(entry.error, DETAIL_WIDTH)]
    r = entry.record
    return [
        str(entry.id), _when(r["failed_at"]), r["reason"], r["stage"], _cut(r["customer_id"], ID_WIDTH),
        _cut(r["event_id"], ID_WIDTH), f"{r['source_topic']} {r['source_partition']}:{r['source_offset']}",
        _cut(r["detail"], DETAIL_WIDTH),
    ]


# --- list ---------------------------------------------------------------------------------
def list_records(settings: Settings, selection: Selection, limit: int, as_json: bool) -> int:
    counts: Counter[str] = Counter()
    kept = Earliest(limit)
    read = 0
    with session(settings) as reader:
        topic = reader.topic
        for entry in reader.scan(selection.since):
            read += 1
            if selection.matches(entry):
                counts[entry.get("reason") or "(undecodable)"] += 1
                kept.offer(entry)
    shown = kept.entries()
    matched = sum(counts.values())
    if as_json:
        for entry in shown:
            click.echo(_dumps(entry_json(entry)))
    elif shown:
        _table(["ID", "FAILED_AT", "REASON", "STAGE", "CUSTOMER", "EVENT_ID", "SOURCE", "DETAIL"],
               [_list_row(e) for e in shown])
        click.echo()
    # The summary: after the table on stdout; on stderr with --json, so stdout stays JSON lines.
    err = as_json
    if not matched:
        click.echo(f"no matching DLQ records ({read:,} read from {topic})", err=err)
        return 0
    more = f"; the earliest {len(shown):,} shown, --limit 0 shows all" if len(shown) < matched else ""
    click.echo(f"{matched:,} matching of {read:,} records read from {topic}{more}", err=err)
    width = max(map(len, counts))
    for reason, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        click.echo(f"  {reason.ljust(width)}  {count:,}", err=err)
    return 0


# --- show ---------------------------------------------------------------------------------
def show_records(settings: Settings, ids: list[DlqId], as_json: bool) -> int:
    missing = 0
    with session(settings) as reader:
        originals = OriginalDecoder(reader.resolver, reader.topics)
        for number, (dlq_id, entry) in enumerate(reader.fetch_many(ids).items()):
            if isinstance(entry, DlqError):
                click.secho(f"error: {entry}", fg="red", err=True)
                missing += 1
                continue
            details = _details(reader, originals, entry)
            if as_json:
                click.echo(_dumps(details))
            else:
                if number:
                    click.echo()
                _print_details(reader.topic, details)
    return 1 if missing else 0


def _details(reader: DlqReader, originals: OriginalDecoder, entry: DlqEntry) -> dict:
    details = entry_json(entry)
    details["headers"] = {k: utf8_or_none(v) if utf8_or_none(v) is not None else base64.b64encode(v).decode()
                          for k, v in entry.headers.items()}
    if entry.record is None:
        return details
    value = entry.record["value"]
    schema, decoded, error = originals.decode(entry.record["source_topic"], value)
    details.update(value_base64=base64.b64encode(value).decode(), value_schema=schema, value=decoded,
                   value_error=error)
    source = reader.source_record(entry)
    if source is None:
        details["source_record"] = "not there: removed by retention, or never written"
    elif not source.same_value:
        details["source_record"] = "holds other bytes than this DLQ record's value"
    else:
        headers = source.header_map
        details["source_record"] = "present"
        details["retry_count"] = retry_count(headers)
        details["retry_of"] = utf8_or_none(headers.get(RETRY_OF_HEADER))
    return details


def _print_details(topic: str, d: dict) -> None:
    click.secho(f"{topic} {d['id']}", bold=True)
    if "error" in d:
        click.echo(f"  error          {d['error']}")
        return
    rows = [
        ("failed_at", d["failed_at"]), ("reason", d["reason"]), ("stage", d["stage"]), ("detail", d["detail"]),
        ("customer_id", d["customer_id"] or "-"), ("event_id", d["event_id"] or "-"),
        ("source", f"{d['source_topic']} {d['source_partition']}:{d['source_offset']} ({d['source_record']})"),
        ("key", _key_for_humans(base64.b64decode(d["key_base64"]) if d["key_base64"] is not None else None)),
    ]
    if "retry_count" in d:
        last = f", last from DLQ {d['retry_of']}" if d["retry_of"] else ""
        rows.append(("retried", f"{d['retry_count']} time(s){last}" if d["retry_count"] else "never"))
    for name, value in rows:
        click.echo(f"  {name.ljust(13)}  {value}")
    size = f"{d['value_bytes']:,} bytes"
    if d["value"] is not None:
        click.echo(f"  value          {size}, decoded with {d['value_schema']}:")
        text = orjson.dumps(d["value"], default=_json_default, option=orjson.OPT_INDENT_2).decode()
        for line in text.splitlines():
            click.echo(f"    {line}")
    else:
        raw = base64.b64decode(d["value_base64"])
        click.echo(f"  value          {size}, not decoded: {d['value_error']}")
        click.echo(f"    base64  {d['value_base64']}")
        click.echo(f"    hex     {raw[:HEX_BYTES].hex(' ')}" + (" …" if len(raw) > HEX_BYTES else ""))


# --- retry --------------------------------------------------------------------------------
def retry_records(settings: Settings, ids: list[DlqId], selection: Selection, max_retries: int, dry_run: bool,
                  progress: bool, as_json: bool) -> int:
    shown_at = [0.0]

    def due() -> bool:  # a progress line at most every PROGRESS_EVERY_S
        if not progress or time.monotonic() - shown_at[0] < PROGRESS_EVERY_S:
            return False
        shown_at[0] = time.monotonic()
        return True

    def show_reading(done: int) -> None:
        if due():
            click.echo(f"\rchecking retry counts: {done:,}/{len(entries):,}", err=True, nl=False)

    not_found: list[tuple[DlqId, str]] = []
    with session(settings) as reader:
        topic = reader.topic
        if ids:
            entries = []
            for dlq_id, found in reader.fetch_many(ids).items():
                if isinstance(found, DlqError):
                    not_found.append((dlq_id, str(found)))
                else:
                    entries.append(found)
        else:
            entries = sorted(reader.select(selection), key=lambda e: e.sort_key)  # re-driven in failure order
        planned = plan(reader, entries, max_retries, show_reading)
        if progress and entries:
            click.echo(f"\rchecking retry counts: {len(entries):,}/{len(entries):,}", err=True)

    to_retry = sum(1 for p in planned if p.decision.action == RETRY)
    if not dry_run and to_retry:
        redriver = Redriver(settings)

        def show_sending(produced: int, acknowledged: int, final: bool = False) -> None:
            if final or due():
                click.echo(f"\rretrying: {produced:,}/{to_retry:,} produced, {acknowledged:,} acknowledged   ",
                           err=True, nl=final)

        try:
            redriver.send(planned, show_sending)
        finally:
            redriver.close()
        if progress:
            show_sending(redriver.produced, redriver.acknowledged, final=True)

    outcomes = [retry_outcome(p, dry_run) for p in planned] + [
        {"id": str(i), "outcome": "failed", "why": why} for i, why in not_found
    ]
    counts = Counter(o["outcome"] for o in outcomes)
    summary = {
        "dry_run": dry_run,
        "selected": len(outcomes),
        ("would_retry" if dry_run else "retried"): counts["would retry" if dry_run else "retried"],
        "failed": counts["failed"],
        "skipped": counts["skipped"],
    }
    log.info("dlq_retry_done", topic=topic, max_retries=max_retries, **summary)
    if as_json:
        click.echo(_dumps({**summary, "records": outcomes}))
    else:
        _print_retry(outcomes, dry_run, topic)
        click.echo(_retry_summary_line(summary, dry_run, topic))
    return 1 if counts["failed"] else 0


def _print_retry(outcomes: list[dict], dry_run: bool, topic: str) -> None:
    # A dry run lists every record (that is what it is for); a real run only those not retried.
    shown = outcomes if dry_run else [o for o in outcomes if o["outcome"] != "retried"]
    if not shown:
        return
    rows = []
    for o in shown:
        what = f"{o['outcome']} (#{o['retry_count']})" if "retry_count" in o else o["outcome"]
        rows.append([o["id"], what, o.get("topic") or "-", o.get("reason") or "-", _cut(o.get("customer_id"), ID_WIDTH),
                     _cut(o.get("event_id"), ID_WIDTH), o.get("why", "")])
    _table(["ID", "OUTCOME", "TO_TOPIC", "REASON", "CUSTOMER", "EVENT_ID", "WHY"], rows)


def _retry_summary_line(summary: dict, dry_run: bool, topic: str) -> str:
    if dry_run:
        return (f"dry run, nothing produced: would retry {summary['would_retry']:,}, "
                f"failed {summary['failed']:,}, skipped {summary['skipped']:,} of {summary['selected']:,} "
                f"records from {topic}; run again with --yes to retry")
    return (f"retried {summary['retried']:,}, failed {summary['failed']:,}, skipped {summary['skipped']:,} "
            f"of {summary['selected']:,} records from {topic}")


def progress_default(progress: bool | None) -> bool:
    return sys.stderr.isatty() if progress is None else progress


# --- commands ---------------------------------------------------------------------------
def _dlq_ids(values: tuple[str, ...]):
    try:
        return parse_ids(values)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="ID") from exc


def _dlq_run(body, *args, **kwargs) -> None:
    try:
        code = body(get_settings(), *args, **kwargs)
    except DlqError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(1)
    sys.exit(code)


def _dlq_selection(reasons, customer, stage, since, until):
    if since and until and since >= until:
        raise click.BadParameter(f"--since ({since.isoformat()}) must be before --until ({until.isoformat()})")
    return Selection(frozenset(reasons), customer, stage, since, until)


@click.group(cls=Group)
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
@click.option("--since", type=TimeType(), help=f"Only records that failed at or after this time: {TIME_HELP}")
@click.option("--until", type=TimeType(), help=f"Only records that failed before this time: {TIME_HELP}")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(min=0),
              help="Show the N earliest matching records (0: all); the summary counts them all.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per record on stdout; the summary on stderr.")
def dlq_list(reasons, customer, stage, since, until, limit: int, as_json: bool) -> None:
    """List DLQ records: a table (id, failed_at, reason, stage, customer, event_id, source,
    detail) or JSON lines, then the number of matching records per reason.

    Reads every partition from the beginning (or from --since, by timestamp) up to the end it
    had when the command started, then stops. Reads only: nothing is committed or changed.
    """
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
    _dlq_run(show_records, _dlq_ids(ids), as_json)


@dlq.command("retry")
@click.argument("ids", metavar="[ID...]", nargs=-1)
@click.option("--reason", "reasons", multiple=True, type=click.Choice(KNOWN_REASONS),
              help="Retry every record with this reason (instead of IDs); repeat for several.")
@click.option("--customer", help="With --reason: only records of this customer_id.")
@click.option("--stage", type=click.Choice(KNOWN_STAGES), help="With --reason: only records refused at this stage.")
@click.option("--since", type=TimeType(), help=f"With --reason: only records that failed at or after this time: {TIME_HELP}")
@click.option("--until", type=TimeType(), help=f"With --reason: only records that failed before this time: {TIME_HELP}")
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
