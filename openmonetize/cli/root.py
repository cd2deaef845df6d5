"""The root of the `openmonetize` command: the top group, its error handling and the logging of a
long-running process. The command groups are in the modules beside this one; the package's
__init__ puts them together."""

from __future__ import annotations

import sys

import click

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


def configure_process_logs(service: str) -> None:
    """A long-running process (`run ...`, `proxy`) logs at LOG_LEVEL in LOG_FORMAT, named SERVICE."""
    from openmonetize import metrics

    settings = get_settings()
    logs.configure(level=settings.log_level, fmt=settings.log_format, service=service)
    metrics.describe_process(service)
