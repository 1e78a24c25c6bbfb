"""`findlora auth add|list|revoke`: clients of the inference service, managed on the database
itself (the operator holds it, as for `findlora db` and `catalog import`). Admin clients can do
the same over gRPC (CreateClient, ListClients, RevokeClient)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from findlora.console import console, err_console, fail, run

if TYPE_CHECKING:
    from psycopg import AsyncConnection

auth_app = typer.Typer(help="Clients of the inference service and their bearer tokens.", no_args_is_help=True)
OPERATOR = "operator"  # the audit log's actor for commands run on the database


@asynccontextmanager
async def _database() -> AsyncIterator[AsyncConnection[Any]]:
    import asyncio
    import logging

    import psycopg

    from db.migrate import ready_url
    from inference_service.config import Settings
    from inference_service.logs import configure_logging

    configure_logging(json=False, level=logging.WARNING)  # stderr: stdout is the --json output
    settings = Settings()
    # As the service: the runtime role may add clients but not change the schema.
    url = await asyncio.to_thread(ready_url, settings.database_url, settings.pg_dir)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        yield conn


async def _add(name: str, role: str, users: str) -> dict[str, Any]:
    from db.clients import ClientError, check_users, create_client, parse_role, roles_up_to

    try:
        roles = roles_up_to(parse_role(role))
        users = check_users(users)
        async with _database() as conn:
            issued = await create_client(conn, name, roles, actor=OPERATOR, client=None, users=users)
    except ClientError as exc:
        fail(exc.message)
    return issued.as_json()


@auth_app.command("add")
def add(
    name: str = typer.Argument(..., help="The client: a bot, a script (a-z, 0-9, '.', '_', '-')."),
    role: str = typer.Option(
        ...,
        "--role",
        help="search | moderate (adds registration, moderation) | admin (adds takedown, clients).",
    ),
    users: str = typer.Option(
        "",
        "--users",
        help="The prefix of every user id it may act for, ending in ':' (a Discord bot: 'discord:', "
        "a Slack app: 'slack:<team id>:'); empty: any id (scripts).",
    ),
    as_json: bool = typer.Option(False, "--json", help='Print {"name", "token", "roles", "users"}.'),
) -> None:
    """Create a client and print its token, once (only its sha256 is kept). Only the token goes to
    stdout, so `findlora auth add bot --role search > token-file` stores it."""
    issued = run(_add(name, role, users))
    if as_json:
        print(json.dumps(issued))
        return
    acting = f", acting for user ids {issued['users']}*" if issued["users"] else ""
    err_console.print(
        f"client {issued['name']!r} created with roles {', '.join(issued['roles'])}{acting}; its token:"
    )
    print(issued["token"])
    err_console.print("[dim]shown once: give it to the client as FINDLORA_TOKEN or FINDLORA_TOKEN_FILE[/]")


async def _list() -> list[dict[str, Any]]:
    from db.clients import list_clients

    async with _database() as conn:
        rows = await list_clients(conn)
    return [
        {
            "name": row.name,
            "roles": list(row.roles),
            "created_at": row.created_at.isoformat(),
            "revoked_at": None if row.revoked_at is None else row.revoked_at.isoformat(),
            "users": row.users,
        }
        for row in rows
    ]


@auth_app.command("list")
def list_cmd(as_json: bool = typer.Option(False, "--json", help="Print one JSON array.")) -> None:
    """Every client, revoked ones too (names are never reused)."""
    rows = run(_list())
    if as_json:
        print(json.dumps(rows))
        return
    table = Table(title="findlora clients")
    for column in ("name", "roles", "users", "created", "revoked"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["name"],
            ", ".join(row["roles"]),
            row["users"] or "any",
            row["created_at"][:19],
            (row["revoked_at"] or "")[:19],
        )
    console.print(table)


async def _revoke(name: str) -> bool:
    from db.clients import ClientError, revoke_client

    try:
        async with _database() as conn:
            return await revoke_client(conn, name, actor=OPERATOR, client=None)
    except ClientError as exc:
        fail(exc.message)


@auth_app.command("revoke")
def revoke(name: str = typer.Argument(..., help="The client to revoke.")) -> None:
    """Revoke a client: its token is refused from the next call on, no restart needed."""
    if run(_revoke(name)):
        console.print(f"client {name!r} revoked")
    else:
        console.print(f"client {name!r} was revoked already")


def register(app: typer.Typer) -> None:
    app.add_typer(auth_app, name="auth")
