"""Least privilege: what the runtime role (service, worker) may do in the schema the migration
role owns. Granted by `findlora db migrate` (FINDLORA_RUNTIME_ROLE), idempotently, on every run.

The runtime role reads and writes rows (the audit log: appends only) and calls the functions the
migrations created
(procrastinate's queue: functions, triggers, LISTEN/NOTIFY; triggers run with the caller's
rights, so its tables need DML too). It owns nothing, so it cannot CREATE, ALTER, DROP or
TRUNCATE; PostgreSQL 15+ already keeps CREATE on schema public to the database owner.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

# Default privileges: what the migration role creates later is granted to the runtime role too.
_STATEMENTS = (
    "GRANT USAGE ON SCHEMA public TO {role}",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
    "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
    # The migration history is read (is the schema current?) but written only by migrations.
    "REVOKE INSERT, UPDATE, DELETE ON schema_migrations FROM {role}",
    # The audit log is append-only, and a flag is decided, never deleted: the service's own
    # credentials cannot rewrite who did what.
    "REVOKE UPDATE, DELETE ON audit_log FROM {role}",
    "REVOKE DELETE ON flags FROM {role}",
    "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role}",
    "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {role}",
    "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT EXECUTE ON FUNCTIONS TO {role}",
)
# EXECUTE is PUBLIC's by default; granted explicitly on the functions this role owns (the
# queue's, the triggers') so a database that revoked it from PUBLIC still works. pgvector's
# functions belong to whoever created the extension and stay as they are.
_OWN_FUNCTIONS = """
SELECT p.oid::regprocedure::text FROM pg_proc p
WHERE p.pronamespace = 'public'::regnamespace
  AND p.proowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)
"""


class RuntimeRoleMissing(ValueError):
    """FINDLORA_RUNTIME_ROLE names a role the server does not have."""


def grant_runtime_privileges(conn: psycopg.Connection[tuple[object, ...]], role: str) -> None:
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    if exists is None:
        raise RuntimeRoleMissing(
            f"FINDLORA_RUNTIME_ROLE is {role!r}, but the database has no such role: create it "
            "(CREATE ROLE ... LOGIN PASSWORD ...; docs/deploy.md) and run `findlora db migrate` again"
        )
    name = sql.Identifier(role)
    database = conn.execute("SELECT current_database()").fetchone()
    assert database is not None
    with conn.transaction():
        for statement in _STATEMENTS:
            conn.execute(sql.SQL(statement).format(role=name))
        # An activation's re-embedding loads its rows through a temporary table; the deploy
        # guide's init script revokes TEMPORARY from PUBLIC.
        conn.execute(
            sql.SQL("GRANT TEMPORARY ON DATABASE {} TO {}").format(sql.Identifier(str(database[0])), name)
        )
        for (function,) in conn.execute(_OWN_FUNCTIONS).fetchall():
            conn.execute(sql.SQL("GRANT EXECUTE ON FUNCTION {} TO {}").format(sql.SQL(str(function)), name))
