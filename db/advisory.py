"""A session advisory lock taken without holding a snapshot while it waits.

`SELECT pg_advisory_lock(...)` waits inside a statement, and that statement's snapshot is one
that a CREATE INDEX CONCURRENTLY run by the lock's holder must wait out: the holder waits for
the waiter, the waiter for the holder, and PostgreSQL breaks the deadlock by failing one of them
(two processes migrating, or building the spec index, at once). Polling pg_try_advisory_lock,
each try its own short statement on an autocommit connection, holds no snapshot between tries.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import structlog

log = structlog.get_logger(__name__)
POLL_S = 0.2
# By the key's arity: one bigint, or two ints.
_TRY = {1: "SELECT pg_try_advisory_lock(%s)", 2: "SELECT pg_try_advisory_lock(%s, %s)"}
_UNLOCK = {1: "SELECT pg_advisory_unlock(%s)", 2: "SELECT pg_advisory_unlock(%s, %s)"}


@contextmanager
def advisory_lock(conn: psycopg.Connection[tuple[object, ...]], *key: int) -> Iterator[None]:
    """Hold the session advisory lock `key` (one bigint or two ints) on `conn`, which must be in
    autocommit mode, for the block."""
    if not conn.autocommit:
        raise ValueError("advisory_lock needs an autocommit connection: a transaction would hold a snapshot")
    waited = False
    while True:
        row = conn.execute(_TRY[len(key)], key).fetchone()
        if row is not None and row[0]:
            break
        if not waited:
            log.info("advisory_lock_waiting", key=key)
            waited = True
        time.sleep(POLL_S)
    try:
        yield
    finally:
        conn.execute(_UNLOCK[len(key)], key)
