"""The embedded database's own `local` client with every role (docs/design.md 13).

A missing `<data dir>/client-token`, or one whose token no longer authenticates as `local`,
gets a new token.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from psycopg import AsyncConnection

from db.clients import ROLES, Role, authenticate, reissue_client
from findlora_client.credentials import LOCAL_TOKEN_FILE
from inference_service.private_files import write_private

LOCAL_CLIENT = "local"


def token_path(data_dir: Path) -> Path:
    return data_dir / LOCAL_TOKEN_FILE


async def ensure_local_client(conn: AsyncConnection[Any], data_dir: Path) -> str:
    """The `local` client's token, from its file when still valid, else newly issued and written."""
    path = token_path(data_dir)
    with contextlib.suppress(OSError):
        token = path.read_text(encoding="utf-8").strip()
        caller = await authenticate(conn, token)
        if caller is not None and caller.name == LOCAL_CLIENT and caller.has(Role.ADMIN):
            path.chmod(0o600)
            return token
    issued = await reissue_client(conn, LOCAL_CLIENT, ROLES)
    write_private(path, issued.token, replace=True)
    return issued.token
