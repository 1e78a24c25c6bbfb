"""Waiting in tests for something another task or process does, polled, with a named timeout."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


async def eventually(check: Callable[[], Any], what: str, timeout_s: float = 15.0) -> Any:
    """The first truthy value of `check()`, polled; an AssertionError naming `what` past the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
