"""`openmonetize run ...` and `openmonetize proxy`: the long-running processes in the foreground
(what the supervisor of deploy/local_stack/ starts, and a container's entry point)."""

from __future__ import annotations

import os

import click

from openmonetize.cli.root import Group, configure_process_logs
from openmonetize.cycle_collector import collect_cycles_after
from openmonetize.settings import get_settings


@click.command()
@click.option("--port", type=int, help="Listen port (default PROXY_PORT: 18082).")
@click.option("--openai-base-url", help="Where OpenAI calls go (default PROXY_OPENAI_BASE_URL).")
@click.option("--anthropic-base-url", help="Where Anthropic calls go (default PROXY_ANTHROPIC_BASE_URL).")
@click.option("--gemini-base-url", help="Where Gemini calls go (default PROXY_GEMINI_BASE_URL).")
def proxy(port: int | None, openai_base_url: str | None, anthropic_base_url: str | None, gemini_base_url: str | None) -> None:
    """Run the AI proxy in the foreground: point an OpenAI, Anthropic or Gemini SDK's base URL at it
    and add the X-OM-* headers; each call is checked against the user's credits and billed to them."""
    configure_process_logs("proxy")
    from api.proxy.server import run as serve

    given = {"proxy_port": port, "proxy_openai_base_url": openai_base_url,
             "proxy_anthropic_base_url": anthropic_base_url, "proxy_gemini_base_url": gemini_base_url}
    serve(get_settings().model_copy(update={name: value for name, value in given.items() if value is not None}))



@click.group(cls=Group)
def run() -> None:
    """Run one long-running process in the foreground (what `stack up` supervises;
    also the entry point for containers)."""


@run.command("api")
def run_api() -> None:
    """The HTTP API on API_HOST:API_PORT."""
    configure_process_logs("api")
    from api.server import run as serve

    serve()


@run.command("worker")
def run_worker() -> None:
    """The stream-processing worker (Faust); web and /metrics on WORKER_WEB_PORT."""
    configure_process_logs("worker")
    from stream_processors.worker import run as serve

    serve()


@run.command("sink-ledger")
def run_sink_ledger() -> None:
    """The Postgres ledger sink: ledger.entries → ledger_entries; /metrics on LEDGER_SINK_METRICS_PORT."""
    configure_process_logs("sink-ledger")
    collect_cycles_after(get_settings().gc_threshold)
    from sinks.ledger_postgres import run as serve

    serve(get_settings())


@run.command("sink-clickhouse")
def run_sink_clickhouse() -> None:
    """The ClickHouse sink: usage.rated → usage_events; /metrics on CLICKHOUSE_SINK_METRICS_PORT."""
    configure_process_logs("sink-clickhouse")
    collect_cycles_after(get_settings().gc_threshold)
    os.nice(get_settings().analytics_nice)  # the ledger first under a backlog (ANALYTICS_NICE)
    from sinks.usage_clickhouse import run as serve

    serve(get_settings())


@run.command("proxy")
def run_proxy() -> None:
    """The AI proxy on PROXY_HOST:PROXY_PORT (`openmonetize proxy` with the settings as they are)."""
    configure_process_logs("proxy")
    from api.proxy.server import run as serve

    serve(get_settings())


@run.command("clickhouse")
def run_clickhouse() -> None:
    """The embedded ClickHouse engine (chdb) on ClickHouse's HTTP interface, CLICKHOUSE_PORT."""
    from deploy.clickhouse_http.__main__ import main as serve

    settings = get_settings()
    os.nice(settings.analytics_nice)  # the ledger first under a backlog (ANALYTICS_NICE)
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
    configure_process_logs("supervisor")
    from deploy.local_stack.stack import Stack
    from deploy.local_stack.supervisor import Supervisor

    stack = Stack(get_settings())
    Supervisor(get_settings(), stack.supervised, stack.child_env()).run()
