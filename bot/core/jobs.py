"""Registering a LoRA by link, whatever the chat: the job's progress (WatchJob) as text lines a chat
adapter keeps editing into place."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import structlog

from bot.core.replies import friendly_error
from bot.core.services import ChatServices
from findlora_client import ServiceCallError
from protos import findlora_pb2 as pb

log = structlog.get_logger(__name__)
Say = Callable[[str], Awaitable[None]]

_STATE_ICON = {
    pb.JOB_STATE_QUEUED: "⏳",
    pb.JOB_STATE_RUNNING: "⚙️",
    pb.JOB_STATE_SUCCEEDED: "✅",
    pb.JOB_STATE_FAILED: "❌",
}
FINAL_STATES = (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED)


def progress_text(event: pb.JobEvent) -> str:
    icon = _STATE_ICON.get(event.state, "•")
    state = pb.JobState.Name(event.state).removeprefix("JOB_STATE_").lower()
    parts = [f"{icon} Registration {state}"]
    if event.step:
        parts.append(f"step {event.step}")
    if event.state not in FINAL_STATES or event.state == pb.JOB_STATE_SUCCEEDED:
        parts.append(f"{event.progress:.0%}")
    line = " · ".join(parts)
    if event.message:
        line += f"\n{event.message}"
    if event.state == pb.JOB_STATE_SUCCEEDED and event.slug:
        line += f"\nRegistered as `{event.slug}`."
    for warning in event.lookalikes:
        line += (
            f"\n⚠️ Looks like `{warning.similar_slug}` (centroid distance {warning.centroid_distance:.3f}"
            f" < {warning.threshold:.3f}): check it is not a copy before leaving it up."
        )
    return line


async def follow_job(
    events: AsyncIterator[pb.JobEvent],
    show: Callable[[str], Awaitable[None]],
    *,
    min_interval_s: float = 1.5,
    clock: Callable[[], float] = time.monotonic,
) -> pb.JobEvent | None:
    """Show progress as it streams, at most one update per interval (chat edit rate limits),
    always the final state; returns the last event."""
    last: pb.JobEvent | None = None
    shown_at = float("-inf")
    pending = False
    async for event in events:
        last = event
        now = clock()
        if event.state in FINAL_STATES or now - shown_at >= min_interval_s:
            await show(progress_text(event))
            shown_at, pending = now, False
        else:
            pending = True
    if last is not None and pending:
        await show(progress_text(last))
    return last


def split_trigger_words(text: str | None) -> list[str]:
    return [word.strip() for word in (text or "").split(",") if word.strip()]


async def register_and_follow(
    services: ChatServices[Any],
    moderator: str,
    url: str,
    metadata: pb.LoraMetadata,
    say: Say,
    progress: Callable[[str], Awaitable[Say]],
) -> None:
    """Start the job and keep its progress shown where `progress(job_id)` puts it; `say` tells the
    moderator why it could not start or was lost track of."""
    try:
        job_id = await services.client.register_lora(
            url, metadata, requested_by=moderator, timeout=services.settings.call_timeout_s
        )
    except ServiceCallError as error:
        log.info("registration_refused", by=moderator, code=error.code.name if error.code else "")
        await say(friendly_error(error))
        return
    log.info("registration_started", by=moderator, job_id=job_id)
    show = await progress(job_id)
    try:
        await follow_job(services.client.watch_job(job_id), show)
    except ServiceCallError as error:
        await say(f"Lost track of job `{job_id}`: {friendly_error(error)}")
