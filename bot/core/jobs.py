"""Registration job progress (WatchJob) as text lines a chat adapter keeps editing into place."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable

from protos import findlora_pb2 as pb

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
