"""Background loops that stop between rounds, never in the middle of one.

psycopg_pool can lose a cancellation that lands while it hands out a connection (psycopg issues
1345, 1401): the cancelled task runs on, and whoever awaits its end waits for good (a worker's
job waited on its heartbeat that way). So these loops are stopped by an event, and a round in
flight finishes; each round bounds its own database work (a statement or pool timeout).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


async def every(
    interval_s: float, stop: asyncio.Event, work: Callable[[], Awaitable[object]], *, first_now: bool = False
) -> None:
    """Run `work` every `interval_s` seconds until `stop` is set; with `first_now`, once at the
    start too."""
    if first_now and not stop.is_set():
        await work()
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), interval_s)
        except TimeoutError:
            await work()
