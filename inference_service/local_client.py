"""The embedded database's own `local` client with every role (docs/design.md 13).

A missing `<data dir>/client-token`, or one whose token no longer authenticates as `local`,
gets a new token.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from psycopg import AsyncConnection

from db.clients import ROLES, Role, authenticate, reissue_client
from findlora_client.credentials import LOCAL_TOKEN_FILE

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
    _write_private(path, issued.token)
    return issued.token


def _write_private(path: Path, text: str) -> None:
    """Write with mode 0600 from the first byte, then move into place (never readable by others)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text + "\n")
    os.replace(temporary, path)
