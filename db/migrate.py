"""Apply the numbered SQL migrations in db/migrations, each once, each in its own transaction.

Against an external database only `findlora db migrate` changes the schema (docs/design.md 4).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import psycopg

from db.advisory import advisory_lock
from db.embedded import DatabaseUnavailable
from db.privileges import grant_runtime_privileges
from db.spec_index import ensure_catalog_spec_index

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_NAME_RE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
# One migrator at a time across processes (service replicas starting together).
_LOCK_KEY = 0x66696E646C6F7261  # "findlora"


class SchemaBehind(DatabaseUnavailable):
    """The database lacks migrations this release needs; the message names the command to run."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path


def available_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME_RE.match(path.name)
        if not match:
            raise ValueError(f"migration file name must be NNN_name.sql: {path}")
        found.append(Migration(int(match.group(1)), match.group(2), path))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"duplicate migration numbers in {directory}")
    return found


def migrate(
    url: str, directory: Path = MIGRATIONS_DIR, *, runtime_role: str | None = None
) -> list[Migration]:
    """Bring the database to the newest schema; returns the migrations applied now. With
    `runtime_role`, that role is granted what the service needs, now and on future tables."""
    applied_now = []
    # One migrator at a time (replicas starting together), waiting without a snapshot: the
    # spec index build below is a CREATE INDEX CONCURRENTLY (db/advisory.py).
    with psycopg.connect(url, autocommit=True) as conn, advisory_lock(conn, _LOCK_KEY):
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        for migration in available_migrations(directory):
            if migration.version in done:
                continue
            with conn.transaction():
                conn.execute(migration.path.read_text(encoding="utf-8").encode())
                conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                    (migration.version, migration.name),
                )
            applied_now.append(migration)
        _apply_queue_schema(conn)
        if runtime_role:
            grant_runtime_privileges(conn, runtime_role)
        # The spec points' HNSW index follows the catalog's CLIP dimension, so no numbered
        # migration can create it; the migration role owns the table and builds it here.
        ensure_catalog_spec_index(conn)
    return applied_now


def _apply_queue_schema(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """procrastinate's job-queue schema, once (it ships its own SQL; not re-run when present).
    Skipped where procrastinate is not installed (the bot-only install never migrates)."""
    try:
        from procrastinate.schema import SchemaManager
    except ImportError:
        return
    row = conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL").fetchone()
    if row is not None and row[0]:
        return
    with conn.transaction():
        conn.execute(SchemaManager.get_schema().encode())


def _applied_versions(conn: psycopg.Connection[tuple[object, ...]]) -> set[int]:
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return set()
    return {cast(int, row[0]) for row in conn.execute("SELECT version FROM schema_migrations")}


def pending_migrations(url: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """What `migrate` would still apply: migration names, and the job queue's schema."""
    with psycopg.connect(url) as conn:
        applied = _applied_versions(conn)
        queue = conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL").fetchone()
    missing = [
        f"{m.version:03d}_{m.name}" for m in available_migrations(directory) if m.version not in applied
    ]
    if not (queue and queue[0]):
        missing.append("the job queue schema")
    return missing


def ready_url(explicit: str | None, pg_dir: Path) -> str:
    """The database URL at the newest schema, for a process that serves or administers it. The
    embedded database (no DATABASE_URL) is started on demand and migrated here, for zero setup. An
    external one is only checked: its schema belongs to the migration role (`findlora db
    migrate`), and the runtime role may not change it, so a schema that is behind stops the
    process with that command."""
    from db.embedded import database_url

    url = database_url(explicit, pg_dir)
    if explicit:
        require_current(url)
    else:
        migrate(url)
    return url


def require_current(url: str, directory: Path = MIGRATIONS_DIR) -> None:
    """Refuse to run against a schema that is behind: migrating is the migration role's job."""
    missing = pending_migrations(url, directory)
    if missing:
        raise SchemaBehind(
            f"the database schema is behind this release (not applied: {', '.join(missing)}); "
            "run `findlora db migrate` with the migration role's DATABASE_URL, then start again"
        )


def current_version(url: str) -> int:
    with psycopg.connect(url) as conn:
        exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
        if not exists or not exists[0]:
            return 0
        row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
        return int(row[0]) if row else 0
