"""asyncio.gather, except that the first failure cancels the other awaitables and is raised as
itself: gather leaves them running (a failed search's other branch would still take a database
connection and run the captioner) and drops what they raise later without a word."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar, overload

A = TypeVar("A")
B = TypeVar("B")
C = TypeVar("C")


@overload
async def all_or_cancel(a: Coroutine[Any, Any, A], b: Coroutine[Any, Any, B], /) -> tuple[A, B]: ...


@overload
async def all_or_cancel(
    a: Coroutine[Any, Any, A], b: Coroutine[Any, Any, B], c: Coroutine[Any, Any, C], /
) -> tuple[A, B, C]: ...


async def all_or_cancel(*coroutines: Coroutine[Any, Any, Any]) -> tuple[Any, ...]:
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(coroutine) for coroutine in coroutines]
    except* Exception as failed:
        # The first failure is what callers handle (EncoderChanged is retried, database errors
        # mapped); the siblings were cancelled because of it, so nothing else is lost.
        raise failed.exceptions[0] from None
    return tuple(task.result() for task in tasks)
