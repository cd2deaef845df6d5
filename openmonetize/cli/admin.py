"""`openmonetize admin ...`: the operator's side of tenancy (`customers`, `api-keys`), on the same
store functions as the HTTP routes (openmonetize/stores/tenants.py), and `import-prices`. Unlike a tenant
through the API, the operator may revoke a customer's last active key (to lock it out)."""

from __future__ import annotations

import click
import orjson

from openmonetize.cli.root import Group
from openmonetize.settings import get_settings


@click.group(cls=Group)
def admin() -> None:
    """Operator tasks: tenants and their API keys, provider price snapshots."""


def _store(work, *args):
    """Run `work(conn, *args)` on a fresh connection; a refusal becomes a one-line error (a bad
    value exits 2 as a usage error, anything else 1)."""
    import psycopg

    from openmonetize.stores.refusals import Invalid, Refusal

    try:
        with psycopg.connect(get_settings().database_url) as conn:
            return work(conn, *args)
    except Invalid as exc:
        raise click.BadParameter(exc.message, param_hint=(exc.field or "").upper() or None) from None
    except Refusal as exc:
        raise click.ClickException(exc.message) from None


def _print(rows: list[dict], as_json: bool) -> None:
    if as_json:
        click.echo(orjson.dumps(rows).decode())
        return
    if not rows:
        return
    widths = {col: max(len(col), *(len(_text(row[col])) for row in rows)) for col in rows[0]}
    click.echo("  ".join(col.ljust(width) for col, width in widths.items()).rstrip())
    for row in rows:
        click.echo("  ".join(_text(row[col]).ljust(width) for col, width in widths.items()).rstrip())


def _text(value) -> str:
    if value is None:
        return "-"
    return value.isoformat(timespec="seconds") if hasattr(value, "isoformat") else str(value)


def _key_row(key) -> dict:
    return {"key_id": key.key_id, "name": key.name, "prefix": key.prefix, "created_at": key.created_at,
            "last_used_at": key.last_used_at, "revoked_at": key.revoked_at}


# --- customers -------------------------------------------------------------------------------
@click.group()
def customers() -> None:
    """Tenants (our customers)."""


@customers.command("create")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help='Print {"customer_id": ..., "api_key": ...}.')
def create_customer(name: str, as_json: bool) -> None:
    """Create a tenant NAME and its first API key. The key is shown once: store it."""
    from openmonetize.stores import tenants

    from openmonetize.catalog_admin import publish_tenant

    customer = _store(tenants.create_customer, name)
    if as_json:
        click.echo(orjson.dumps({"customer_id": customer.customer_id, "api_key": customer.api_key}).decode())
    else:
        click.echo(f"customer_id: {customer.customer_id}\napi_key:     {customer.api_key}  (shown once)")
    try:
        publish_tenant(get_settings(), customer.customer_id)
    except Exception as exc:  # noqa: BLE001 - Kafka down: the tenant exists, say how to finish
        raise click.ClickException(
            f"the tenant was created but not published to the workers ({exc}); run `openmonetize catalog sync` "
            "once Kafka answers, or its events are parked as unknown_customer") from None


@customers.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def list_customers(as_json: bool) -> None:
    """Every tenant, oldest first, with its number of active API keys."""
    from openmonetize.stores import tenants

    rows = [{"customer_id": c.customer_id, "name": c.name, "created_at": c.created_at, "active_keys": c.active_keys}
            for c in _store(tenants.list_customers)]
    _print(rows, as_json)


# Before `customers create` existed; kept, out of the help, for the scripts that call it.
create_customer_alias = click.Command(
    "create-customer", callback=create_customer.callback, params=create_customer.params,
    help="Same as `admin customers create`.", hidden=True,
)


# --- api-keys --------------------------------------------------------------------------------
@click.group("api-keys")
def api_keys() -> None:
    """A tenant's API keys: create (shown once), list, revoke."""


@api_keys.command("create")
@click.argument("customer_id")
@click.option("--name", default="default", show_default=True, help="A label to tell the key apart (1-200 characters).")
@click.option("--json", "as_json", is_flag=True, help='Print {"key_id": ..., "api_key": ...}.')
def create_key(customer_id: str, name: str, as_json: bool) -> None:
    """Mint another API key for CUSTOMER_ID. The key is shown once: store it."""
    from openmonetize.stores import tenants

    new = _store(tenants.create_api_key, customer_id, name)
    if as_json:
        click.echo(orjson.dumps({"key_id": new.key.key_id, "api_key": new.api_key}).decode())
    else:
        click.echo(f"key_id:  {new.key.key_id}\napi_key: {new.api_key}  (shown once)")


@api_keys.command("list")
@click.argument("customer_id")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def list_keys(customer_id: str, as_json: bool) -> None:
    """CUSTOMER_ID's keys, newest first, revoked ones included (never the secrets)."""
    from openmonetize.stores import tenants

    _print([_key_row(key) for key in _store(tenants.list_api_keys, customer_id)], as_json)


@api_keys.command("revoke")
@click.argument("customer_id")
@click.argument("key_id")
def revoke_key(customer_id: str, key_id: str) -> None:
    """Revoke KEY_ID of CUSTOMER_ID, at once in every API process. Final. Unlike the API, this
    may revoke the customer's last active key (the customer is then locked out)."""
    from openmonetize.stores import tenants

    key = _store(tenants.revoke_api_key, customer_id, key_id, True)
    click.echo(f"{key.key_id} revoked at {_text(key.revoked_at)}")
    if not any(k.revoked_at is None for k in _store(tenants.list_api_keys, customer_id)):
        click.secho(f"note: {customer_id} has no active API key left", fg="yellow", err=True)


admin.add_command(customers)
admin.add_command(api_keys)
admin.add_command(create_customer_alias)


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
