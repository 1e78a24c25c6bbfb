"""Work done after the 3-second acknowledgement: listeners ack, then hand the slow part here."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import structlog

from bot.core.metrics import BOT_COMMANDS, BOT_ERRORS

log = structlog.get_logger(__name__)


class Background:
    """Keeps a reference to every running task (asyncio holds only weak ones), logs failures,
    and lets shutdown (and tests) wait until all of it has finished."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            BOT_ERRORS.labels("internal").inc()
            log.error("slack_work_failed", work=task.get_name(), exc_info=task.exception())
        else:
            BOT_COMMANDS.labels(task.get_name()).inc()

    @property
    def busy(self) -> bool:
        return bool(self._tasks)

    async def drain(self, timeout_s: float = 60.0, quiet_s: float = 0.05) -> None:
        """Wait until nothing runs for `quiet_s` (listeners spawn from bolt's own tasks, which
        start a loop iteration after the request was acknowledged)."""
        async with asyncio.timeout(timeout_s):
            quiet_since = asyncio.get_running_loop().time()
            while True:
                if self._tasks:
                    await asyncio.wait(set(self._tasks))
                    quiet_since = asyncio.get_running_loop().time()
                elif asyncio.get_running_loop().time() - quiet_since >= quiet_s:
                    return
                await asyncio.sleep(0.01)
