"""`openmonetize produce` (NDJSON events straight to Kafka) and `openmonetize loadgen` (generated
load), on the producer client of producers/. The bodies return the process exit code."""

from __future__ import annotations

import random
import sys
import time
from dataclasses import dataclass, field
from typing import IO, Iterator

import click
import orjson

from openmonetize.settings import Settings, get_settings

CHUNK = 5000  # lines handed to produce_many at once
SHOW_REJECTIONS = 5


@dataclass
class ProduceSummary:
    read: int = 0
    accepted: int = 0
    rejected: int = 0
    delivered: int = 0
    failed: int = 0
    undelivered: int = 0
    elapsed_s: float = 0.0
    rejections: list[dict] = field(default_factory=list)  # the first few: line, field, reason

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _chunks(stream: IO[bytes], summary: ProduceSummary) -> Iterator[tuple[list[int], list[bytes]]]:
    """(line numbers, lines) of up to CHUNK non-blank lines."""
    numbers: list[int] = []
    lines: list[bytes] = []
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        summary.read += 1
        numbers.append(number)
        lines.append(line)
        if len(lines) >= CHUNK:
            yield numbers, lines
            numbers, lines = [], []
    if lines:
        yield numbers, lines


def produce_file(
    settings: Settings,
    stream: IO[bytes],
    customer_id: str,
    *,
    flush_timeout_s: float,
    progress: bool,
    as_json: bool,
) -> int:
    from producers.usage_producer import ProducerError, UsageProducer

    summary = ProduceSummary()
    started = time.monotonic()
    try:
        producer = UsageProducer(customer_id, settings=settings)
    except ProducerError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        return 1

    def show_progress(final: bool = False) -> None:
        rate = summary.accepted / max(time.monotonic() - started, 1e-9)
        click.echo(
            f"\rread {summary.read:,}  accepted {summary.accepted:,}  rejected {summary.rejected:,}  "
            f"delivered {producer.delivered:,}  {rate:,.0f} events/s   ",
            err=True,
            nl=final,
        )

    next_progress = started + 0.5
    try:
        for numbers, lines in _chunks(stream, summary):

            def invalid(index: int, error, numbers=numbers) -> None:
                summary.rejected += 1
                if len(summary.rejections) < SHOW_REJECTIONS:
                    summary.rejections.append({"line": numbers[index], "field": error.field, "reason": error.reason})

            summary.accepted += producer.produce_many(lines, on_invalid=invalid)
            if progress and time.monotonic() >= next_progress:
                show_progress()
                next_progress = time.monotonic() + 0.5
        summary.undelivered = producer.flush(flush_timeout_s)
    except ProducerError as exc:
        summary.undelivered = producer.in_flight
        click.secho(f"\nerror: {exc}", fg="red", err=True)
    finally:
        if progress:
            show_progress(final=True)
        try:
            producer.close(0)
        except ProducerError:
            pass  # already reported by flush above
    summary.delivered, summary.failed = producer.delivered, producer.failed
    summary.elapsed_s = round(time.monotonic() - started, 3)
    _print_summary(summary, as_json)
    return 1 if summary.rejected or summary.failed or summary.undelivered else 0


def _print_summary(summary: ProduceSummary, as_json: bool) -> None:
    if as_json:
        click.echo(orjson.dumps(summary.as_dict()).decode())
        return
    rate = summary.accepted / summary.elapsed_s if summary.elapsed_s else 0.0
    click.echo(
        f"read {summary.read:,}, accepted {summary.accepted:,}, rejected {summary.rejected:,}, "
        f"delivered {summary.delivered:,}, failed {summary.failed:,}"
        + (f", undelivered {summary.undelivered:,}" if summary.undelivered else "")
        + f" in {summary.elapsed_s:.1f}s ({rate:,.0f} events/s)"
    )
    for item in summary.rejections:
        click.echo(f"  line {item['line']}: {item['field'] or 'event'}: {item['reason']}")
    if summary.rejected > len(summary.rejections):
        click.echo(f"  ... and {summary.rejected - len(summary.rejections):,} more rejected")


def run_loadgen(
    settings: Settings,
    *,
    rate: float,
    duration_s: float,
    tenants: int,
    users: int,
    duplicates: float,
    late: float,
    seed: int | None,
    via: str,
    events_file_out: str | None,
    progress: bool,
) -> int:
    from producers import loadgen as lg
    from producers.usage_producer import ProducerError

    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
    tenant_list = lg.ensure_tenants(settings, tenants, with_keys=via == "http")
    generator = lg.EventGenerator(seed, [t.customer_id for t in tenant_list], users, duplicates, late)
    try:
        if via == "kafka":
            sink: lg.Sink = lg.KafkaSink([t.customer_id for t in tenant_list], settings=settings)
        else:
            sink = lg.HttpSink(settings.api_url, {t.customer_id: t.api_key for t in tenant_list if t.api_key})
        out = open(events_file_out, "wb") if events_file_out else None  # noqa: SIM115 - closed below
        try:
            summary = lg.run(
                generator,
                sink,
                rate,
                duration_s,
                events_out=out,
                progress=(lambda s: lg.print_progress(s)) if progress else None,
            )
        finally:
            if out is not None:
                out.close()
    except (lg.LoadgenError, ProducerError) as exc:
        click.secho(f"\nerror: {exc}", fg="red", err=True)
        return 1
    if progress:
        lg.print_progress(summary)
        sys.stderr.write("\n")
    click.echo(f"{summary.line()}; seed {seed}, {tenants} tenants, {users} users/tenant, via {via}")
    for reason in getattr(sink, "first_rejections", [])[:SHOW_REJECTIONS]:
        click.echo(f"  rejected: {reason}")
    counts = summary.counts
    return 1 if counts.get("failed") or counts.get("rejected") or counts.get("in_flight") else 0


@click.command("produce")
@click.option("--file", "-f", "source", required=True, type=click.File("rb"),
              help="NDJSON file of events, one JSON object per line per the event contract; - for stdin.")
@click.option("--customer-id", required=True, help="The tenant the events belong to (events naming another are rejected).")
@click.option("--flush-timeout", default=30.0, show_default=True, help="Seconds to wait for Kafka to acknowledge at the end.")
@click.option("--progress/--no-progress", default=None, help="Progress line on stderr (default: when stderr is a terminal).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
def produce_command(source, customer_id: str, flush_timeout: float, progress: bool | None, as_json: bool) -> None:
    """Validate NDJSON usage events and produce them straight to Kafka (usage.events).

    Every line is checked against the event contract; a malformed or invalid line is rejected
    with its line number and the others are still sent. Prints read, accepted, rejected (the
    first few with line, field and reason), delivered and failed. Exit code 1 when anything was
    rejected or not delivered.
    """
    if progress is None:
        progress = sys.stderr.isatty()
    sys.exit(produce_file(get_settings(), source, customer_id, flush_timeout_s=flush_timeout, progress=progress, as_json=as_json))


@click.command("loadgen")
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
def loadgen_command(rate: float, duration: float, tenants: int, users: int, duplicates: float, late: float,
            seed: int | None, via: str, events_file_out: str | None, progress: bool | None) -> None:
    """Generate realistic mixed usage events at a steady rate.

    OpenAI, Anthropic and Google models; token, embedding, image, audio and custom events;
    log-normal token counts; a share of duplicates (client retries) and late events. Prints
    progress and a final summary line; exit code 1 when events were rejected or not delivered.
    """
    if rate <= 0 or duration <= 0 or tenants < 1 or users < 1:
        raise click.BadParameter("--rate, --duration, --tenants and --users must be positive")
    if not (0 <= duplicates < 1 and 0 <= late < 1):
        raise click.BadParameter("--duplicates and --late are shares between 0 and 1")
    if progress is None:
        progress = sys.stderr.isatty()
    sys.exit(run_loadgen(get_settings(), rate=rate, duration_s=duration, tenants=tenants, users=users, duplicates=duplicates,
                  late=late, seed=seed, via=via, events_file_out=events_file_out, progress=progress))
