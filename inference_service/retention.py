"""Retention: a search is deleted once it expires, not merely hidden (docs/design.md 9).

Between expiry and the next purge GetPage answers FAILED_PRECONDITION ("expired"); after it,
NOT_FOUND ("no such search").
"""

from __future__ import annotations

import asyncio
from contextlib import suppress

import structlog

from db import searches
from db.database import Database

log = structlog.get_logger(__name__)


class SearchPurge:
    """Deletes expired searches now (`run_once`) or every `interval_s` in a background task.
    A failing round (database down, restarting) is logged and the next round tries again."""

    def __init__(self, db: Database, interval_s: float) -> None:
        self.db = db
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> int:
        deleted = await self.db.run(searches.delete_expired_searches)
        if deleted:
            log.info("expired_searches_deleted", count=deleted)
        return deleted

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception as exc:  # never fatal: the service keeps serving, the next round retries
                log.warning(
                    "search_purge_failed",
                    error=type(exc).__name__,
                    detail=str(exc).splitlines()[0] if str(exc) else "",
                    retry_in_s=self.interval_s,
                )
            # stop() cancelled a round but a wait inside it returned anyway (Python 3.11's
            # asyncio.wait_for can swallow a cancellation): end now, not after the next sleep.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise asyncio.CancelledError
            await asyncio.sleep(self.interval_s)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="search-purge")

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with suppress(asyncio.CancelledError):
            await self._task
        self._task = None
