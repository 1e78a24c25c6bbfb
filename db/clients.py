"""Clients of the inference service and their bearer tokens (the `clients` table, docs/design.md 13).

One module for both paths that manage clients: the admin RPCs and `findlora auth`. The token
itself is never stored.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import psycopg
from psycopg import AsyncConnection

from db.moderation import audit

TOKEN_PREFIX = "fl_"
_TOKEN = re.compile(r"^fl_([0-9a-f]{12})_([A-Za-z0-9_-]{20,200})$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


class Role(StrEnum):
    """Hierarchical: each role includes every role listed before it."""

    SEARCH = "search"
    MODERATE = "moderate"
    ADMIN = "admin"


ROLES: tuple[Role, ...] = tuple(Role)


def roles_up_to(role: Role) -> tuple[Role, ...]:
    """The role and every role below it: what a client created with `role` holds."""
    return ROLES[: ROLES.index(role) + 1]


def parse_role(text: str) -> Role:
    try:
        return Role(text.strip().lower())
    except ValueError:
        raise ClientError(f"role must be one of {', '.join(ROLES)}, not {text[:40]!r}") from None


class ClientError(Exception):
    """A refused client operation; `message` is written for the person who asked."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ClientExists(ClientError):
    pass


class ClientNotFound(ClientError):
    pass


@dataclass(frozen=True)
class Identity:
    """Who an accepted token belongs to."""

    name: str
    roles: frozenset[Role]
    users: str = ""  # the prefix of every user id it may act for; '' allows any
    token_id: str = ""  # of the token it showed: a long stream checks it is still live

    def may_act_for(self, user_id: str) -> bool:
        return user_id.startswith(self.users)

    def has(self, role: Role) -> bool:
        # By rank, so a row holding only 'admin' (written by hand) still has moderate and search.
        return any(ROLES.index(held) >= ROLES.index(role) for held in self.roles)


@dataclass(frozen=True)
class ClientRow:
    name: str
    roles: tuple[Role, ...]
    created_at: datetime
    revoked_at: datetime | None
    users: str = ""


@dataclass(frozen=True)
class IssuedClient:
    """A client and its token, shown once: only the token's hash is kept."""

    name: str
    token: str
    roles: tuple[Role, ...]
    users: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "token": self.token, "roles": list(self.roles), "users": self.users}


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _new_client(name: str, roles: Sequence[Role]) -> tuple[str, IssuedClient, list[str]]:
    """For a valid name: a fresh token's id, the client as issued, and its roles as stored."""
    if not _NAME.match(name):
        raise ClientError(
            f"client name {name[:70]!r} must be 1-63 of a-z, 0-9, '.', '_' and '-', "
            "starting with a letter or digit"
        )
    token_id = secrets.token_hex(6)
    stored = [str(role) for role in ROLES if role in set(roles)]
    token = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
    return token_id, IssuedClient(name, token, tuple(Role(r) for r in stored)), stored


def check_users(users: str) -> str:
    """A client's user-id prefix: '' (any id) or printable text ending in ':' (`discord:`,
    `slack:T0TEAM:`), so that `discord` cannot also match `discord-evil:...`."""
    users = users.strip()
    if users and (len(users) > 100 or not users.isprintable() or not users.endswith(":")):
        raise ClientError(
            f"users {users[:40]!r} must be a user-id prefix ending in ':' (such as 'discord:' or "
            "'slack:T0TEAM:'), at most 100 characters; leave it empty to allow any id"
        )
    return users


async def create_client(
    conn: AsyncConnection[Any],
    name: str,
    roles: Sequence[Role],
    *,
    actor: str,
    client: str | None,
    users: str = "",
) -> IssuedClient:
    """A new client with a fresh token (audited). Raises ClientExists for a used name, revoked too.
    `users`: the prefix of every user id it may act for ('' = any)."""
    users = check_users(users)
    token_id, issued, stored = _new_client(name, roles)
    issued = IssuedClient(issued.name, issued.token, issued.roles, users)
    try:
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO clients (name, token_id, token_sha256, roles, users)"
                " VALUES (%s, %s, %s, %s, %s)",
                (name, token_id, _digest(issued.token), stored, users),
            )
            details: dict[str, Any] = {"roles": stored, "users": users}
            await audit(conn, actor, "client_create", name, details, client=client)
    except psycopg.errors.UniqueViolation:
        raise ClientExists(
            f"a client named {name!r} exists already (revoked names are not reused); choose another"
        ) from None
    return issued


async def list_clients(conn: AsyncConnection[Any], *, include_revoked: bool = True) -> list[ClientRow]:
    cur = await conn.execute(
        "SELECT name, roles, created_at, revoked_at, users FROM clients"
        " WHERE %s OR revoked_at IS NULL ORDER BY name",
        (include_revoked,),
    )
    rows = await cur.fetchall()
    return [ClientRow(str(r[0]), tuple(Role(x) for x in r[1]), r[2], r[3], str(r[4])) for r in rows]


async def revoke_client(conn: AsyncConnection[Any], name: str, *, actor: str, client: str | None) -> bool:
    """Revoke at once (the next call with its token is refused). False when it already was."""
    async with conn.transaction():
        cur = await conn.execute(
            "UPDATE clients SET revoked_at = coalesce(revoked_at, now()) WHERE name = %s"
            " RETURNING revoked_at = now()",
            (name,),
        )
        row = await cur.fetchone()
        if row is None:
            raise ClientNotFound(f"no client named {name[:70]!r}")
        if row[0]:
            await audit(conn, actor, "client_revoke", name, {}, client=client)
        return bool(row[0])


async def authenticate(conn: AsyncConnection[Any], token: str) -> Identity | None:
    """The client a token belongs to, or None (malformed, unknown, wrong secret or revoked)."""
    match = _TOKEN.match(token)
    if match is None:
        return None
    cur = await conn.execute(
        "SELECT name, token_sha256, roles, users FROM clients WHERE token_id = %s AND revoked_at IS NULL",
        (match.group(1),),
    )
    row = await cur.fetchone()
    if row is None or not hmac.compare_digest(bytes(row[1]), _digest(token)):
        return None
    return Identity(str(row[0]), frozenset(Role(r) for r in row[2]), str(row[3]), match.group(1))


async def token_is_live(conn: AsyncConnection[Any], token_id: str) -> bool:
    """False once the token was revoked (or replaced: `local`'s is reissued under its name)."""
    cur = await conn.execute("SELECT 1 FROM clients WHERE token_id = %s AND revoked_at IS NULL", (token_id,))
    return await cur.fetchone() is not None


async def reissue_client(conn: AsyncConnection[Any], name: str, roles: Sequence[Role]) -> IssuedClient:
    """Create `name`, or give it a new token and these roles, un-revoking it (the embedded
    database's own `local` client, rewritten when its token file was lost)."""
    token_id, issued, stored = _new_client(name, roles)
    async with conn.transaction():
        await conn.execute(
            """
            INSERT INTO clients (name, token_id, token_sha256, roles) VALUES (%s, %s, %s, %s)
            ON CONFLICT (name) DO UPDATE SET token_id = EXCLUDED.token_id,
                token_sha256 = EXCLUDED.token_sha256, roles = EXCLUDED.roles, revoked_at = NULL
            """,
            (name, token_id, _digest(issued.token), stored),
        )
        await audit(conn, "operator", "client_reissue", name, {"roles": stored})
    return issued
