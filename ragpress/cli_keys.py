"""``ragpress keys``: create, list and revoke API keys in the server's database (no server needs to run)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.table import Table

from ragpress.base.settings import get_settings
from ragpress.cli_common import console, fail

if TYPE_CHECKING:
    from ragpress.base.api_keys import KeyStore

keys_app = typer.Typer(help="Create, list and revoke API keys (run where the server's database is).",
                       no_args_is_help=True)


def _key_store() -> KeyStore:
    from ragpress.base.api_keys import KeyStore  # the database layer loads only for the keys commands
    from ragpress.base.database import make_engine

    return KeyStore(make_engine(get_settings().resolved_database_url))


@keys_app.command("create")
def keys_create(tenant: str = typer.Option(None, help="The tenant the key belongs to."),
                admin: bool = typer.Option(False, help="An admin key (manages tenants and keys)."),
                label: str = typer.Option("", help="A note to recognise the key by.")) -> None:
    """Create a key; it is printed once and stored only as a hash."""
    try:
        key_id, key = _key_store().create_key(None if admin else tenant, admin=admin, label=label)
    except ValueError as exc:
        fail(f"{exc} (pass --tenant NAME or --admin).")
    console.print(f"key id {key_id} ({'admin' if admin else 'tenant ' + tenant}); the key, shown only now:")
    print(key)


@keys_app.command("list")
def keys_list() -> None:
    """Keys by id, tenant and state (never the keys themselves)."""
    table = Table("id", "tenant", "admin", "label", "created", "revoked")
    for row in _key_store().list_keys():
        table.add_row(row["id"], row["tenant"] or "-", str(row["admin"]), row["label"], row["created_at"],
                      str(row["revoked"]))
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: str) -> None:
    """Revoke a key at once."""
    if not _key_store().revoke(key_id):
        fail(f"no active key '{key_id}'.")
    console.print(f"revoked {key_id}")
