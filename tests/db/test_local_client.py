"""The embedded database's `local` client: created once, its token kept in a 0600 file, reissued
when the file is lost or its token no longer authenticates."""

from __future__ import annotations

import stat
from pathlib import Path

import psycopg
import pytest

from db.clients import ROLES, Role, authenticate, revoke_client
from inference_service.local_client import LOCAL_CLIENT, ensure_local_client, token_path

pytestmark = pytest.mark.db


async def test_local_client_token_file_is_private_reused_and_reissued(db_url: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        first = await ensure_local_client(conn, data_dir)
        path = token_path(data_dir)
        assert path.read_text().strip() == first
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        caller = await authenticate(conn, first)
        assert caller is not None
        assert (caller.name, caller.roles) == (LOCAL_CLIENT, frozenset(ROLES))

        assert await ensure_local_client(conn, data_dir) == first  # valid: kept as is

        path.chmod(0o644)
        assert await ensure_local_client(conn, data_dir) == first
        assert stat.S_IMODE(path.stat().st_mode) == 0o600  # and private again

        path.unlink()  # lost: a new token, and the old one stops working
        second = await ensure_local_client(conn, data_dir)
        assert second != first
        assert await authenticate(conn, first) is None
        assert path.read_text().strip() == second

        await revoke_client(conn, LOCAL_CLIENT, actor="test", client=None)
        third = await ensure_local_client(conn, data_dir)  # revoked: no longer matches
        assert third not in (first, second)
        assert (await authenticate(conn, third)) is not None

        path.write_text("fl_0123456789ab_" + "y" * 43)  # someone else's or a stale token
        fourth = await ensure_local_client(conn, data_dir)
        assert fourth != third
        local = await authenticate(conn, fourth)
        assert local is not None
        assert local.has(Role.ADMIN)
        cur = await conn.execute("SELECT count(*) FROM clients WHERE name = %s", (LOCAL_CLIENT,))
        assert await cur.fetchone() == (1,)
