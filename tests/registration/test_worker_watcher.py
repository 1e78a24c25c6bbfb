"""The worker's stalled-job watcher stops with the worker, even when a round is in flight."""

from __future__ import annotations

import asyncio
from contextlib import suppress
from pathlib import Path

import pytest

from inference_service.config import Settings
from inference_service.registration import jobs


def quick_settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        database_url="postgresql:///unused",
        worker_stalled_after_seconds=1,
        worker_heartbeat_seconds=0.2,
    )


async def test_a_round_that_swallows_the_stop_still_lets_the_worker_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """psycopg_pool can lose a cancellation that lands while it hands out a connection; the
    round below returns normally from a cancel, as such a call does. The watcher must still end
    when the worker stops instead of looping on."""
    in_round, rounds = asyncio.Event(), 0

    async def round_that_swallows_cancel(queue: object, settings: Settings) -> int:
        nonlocal rounds
        rounds += 1
        in_round.set()
        with suppress(asyncio.CancelledError):  # the lost cancellation
            await asyncio.sleep(0.3)
        return 0

    async def nothing_orphaned(db: object) -> None:
        return None

    monkeypatch.setattr(jobs, "requeue_stalled", round_that_swallows_cancel)
    monkeypatch.setattr(jobs, "fail_orphaned_registrations", nothing_orphaned)

    async def worker() -> None:
        async with jobs.stalled_jobs_watched(object(), object(), quick_settings(tmp_path)):  # type: ignore[arg-type]
            await in_round.wait()  # the worker stops during a round

    await asyncio.wait_for(worker(), timeout=5)
    await asyncio.sleep(0.6)  # past the watcher's 0.5 s interval: no round after the stop
    assert rounds == 1


async def test_a_round_stuck_on_the_database_does_not_hold_the_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stuck = asyncio.Event()

    async def round_stuck(queue: object, settings: Settings) -> int:
        await stuck.wait()
        return 0

    monkeypatch.setattr(jobs, "requeue_stalled", round_stuck)
    monkeypatch.setattr(jobs, "WATCHER_STOP_WAIT_S", 0.2)
    started = asyncio.get_running_loop().time()
    async with jobs.stalled_jobs_watched(object(), object(), quick_settings(tmp_path)):  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
    assert asyncio.get_running_loop().time() - started < 2
    stuck.set()  # lets the abandoned round end before the loop closes
    await asyncio.sleep(0.05)
