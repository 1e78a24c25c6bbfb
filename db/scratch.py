"""Throw-away databases on the configured server, for benchmarks that load catalogs of their own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from db.migrate import migrate


@contextmanager
def scratch_database(server_url: str, prefix: str, *, keep: bool = False) -> Iterator[str]:
    """Create a new database beside the server's own, migrate it, yield its URL, drop it after
    (unless `keep`), so a benchmark never writes into the catalog a service is using."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = psycopg.conninfo.make_conninfo(server_url, dbname=name)
    try:
        migrate(url)
        yield url
    finally:
        if not keep:
            with psycopg.connect(server_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
