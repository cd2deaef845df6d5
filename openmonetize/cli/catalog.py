"""`openmonetize catalog sync`: republish the billing catalog from Postgres."""

from __future__ import annotations

import click

from openmonetize.cli.root import Group
from openmonetize.settings import get_settings


@click.group(cls=Group)
def catalog() -> None:
    """The billing catalog (burn tables, provider prices, tenant settings) on its Kafka topic."""


@catalog.command()
def sync() -> None:
    """Republish every catalog record from Postgres to the catalog topic. Idempotent; for
    recovery (e.g. a write saved in Postgres whose publication failed)."""
    from openmonetize.catalog_admin import sync as body

    click.echo(f"published {body(get_settings())} catalog records")
