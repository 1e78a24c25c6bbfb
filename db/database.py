"""The connection pool: the one object callers hold. Every query function in db/ takes a
connection first; a caller opens one here and passes it down (several queries may share it)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Concatenate, ParamSpec, TypeVar

from pgvector.psycopg import register_vector_async
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

Connection = AsyncConnection[Any]
P = ParamSpec("P")
T = TypeVar("T")


class Database:
    def __init__(
        self, pool: AsyncConnectionPool[Connection], search_timeout_ms: int = 0, url: str = ""
    ) -> None:
        self.pool = pool
        self.search_timeout_ms = search_timeout_ms  # statement_timeout of search queries; 0: none
        self.url = url  # for work that needs a connection outside the pool (CREATE INDEX CONCURRENTLY)

    @classmethod
    async def open(
        cls, url: str, *, max_size: int = 8, timeout: float = 10.0, search_timeout_ms: int = 0
    ) -> Database:
        """Open a pool on a migrated database (the vector type must exist to register it)."""
        pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            open=False,
            configure=register_vector_async,  # the vector type for every connection
            check=AsyncConnectionPool.check_connection,  # survives a database restart
            timeout=timeout,
        )
        await pool.open(wait=True, timeout=timeout)
        return cls(pool, search_timeout_ms, url)

    async def close(self) -> None:
        await self.pool.close()

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """One pooled connection for several queries; its open transaction commits at the end."""
        async with self.pool.connection() as conn:
            yield conn

    async def search_row(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        """The first row of one read, under the search timeout, in one round trip: BEGIN, the
        timeout, the statement and COMMIT pipelined (each awaited alone, four round trips)."""
        async with self.pool.connection() as conn:
            async with conn.pipeline():
                await self._search_timeout(conn)
                cur = await conn.execute(sql, params)
                await conn.commit()
            return await cur.fetchone()

    @asynccontextmanager
    async def search_connection(
        self, guard: Callable[[Connection], Awaitable[None]] | None = None, *, snapshot: bool = False
    ) -> AsyncIterator[Connection]:
        """A pooled connection for search queries, whose statements PostgreSQL cancels after
        search_timeout_ms (QueryCanceled). Transaction-local: the setting ends with the
        transaction the pool closes, so other users of the connection never see it.
        With `snapshot` or a `guard`, the transaction is one snapshot (REPEATABLE READ); a guard's
        check runs in it first: what it verified holds for every query on the connection."""
        async with self.pool.connection() as conn:
            async with conn.pipeline():  # BEGIN and these settings in one round trip, not three
                if snapshot or guard is not None:
                    await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                await self._search_timeout(conn)
            if guard is not None:
                await guard(conn)
            yield conn

    async def _search_timeout(self, conn: Connection) -> None:
        """search_timeout_ms for the rest of `conn`'s transaction (none when 0)."""
        if self.search_timeout_ms > 0:
            await conn.execute(
                "SELECT set_config('statement_timeout', %s, true)", (f"{self.search_timeout_ms}ms",)
            )

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        async with self.pool.connection() as conn, conn.transaction():
            yield conn

    async def run(
        self, fn: Callable[Concatenate[Connection, P], Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """One query function on a connection of its own: `await db.run(catalog.lora_by_slug, slug)`."""
        async with self.pool.connection() as conn:
            return await fn(conn, *args, **kwargs)
