"""all_or_cancel, what the fused search runs its branches with: the first failure cancels the
other branches and reaches the caller as itself (EncoderChanged is retried, database errors are
mapped); asyncio.gather left the other branch running after a failure."""

from __future__ import annotations

import asyncio

import pytest

from db.encoders import EncoderChanged
from inference_service.concurrency import all_or_cancel


async def test_the_first_failure_cancels_the_rest_and_is_raised_as_itself() -> None:
    events: list[str] = []

    async def fails() -> int:
        await asyncio.sleep(0.01)
        raise EncoderChanged("enc-a", "enc-b")

    async def slow_branch() -> str:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            events.append("cancelled")
            raise
        events.append("finished")
        return "late"

    with pytest.raises(EncoderChanged, match="changed"):
        await asyncio.wait_for(all_or_cancel(slow_branch(), fails()), 2)
    assert events == ["cancelled"]


async def test_results_come_in_argument_order() -> None:
    async def after(seconds: float, value: str) -> str:
        await asyncio.sleep(seconds)
        return value

    assert await all_or_cancel(after(0.03, "a"), after(0.0, "b"), after(0.01, "c")) == ("a", "b", "c")
