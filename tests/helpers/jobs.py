"""A scripted WatchJob stream for bot tests: running, then succeeded with a lookalike warning."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from protos import findlora_pb2 as pb

LOOKALIKE = pb.LookalikeWarning(similar_slug="style-02", centroid_distance=0.05, threshold=0.2)


def scripted_watch_job(job_id: str = "j1") -> Callable[..., AsyncIterator[pb.JobEvent]]:
    """A stand-in for FindLoraClient.watch_job that yields two events for `job_id`."""
    events = [
        pb.JobEvent(job_id=job_id, state=pb.JOB_STATE_RUNNING, step="fetch", progress=0.1),
        pb.JobEvent(
            job_id=job_id,
            state=pb.JOB_STATE_SUCCEEDED,
            progress=1.0,
            slug="new-style",
            lookalikes=[LOOKALIKE],
        ),
    ]

    async def stream(requested: str, **_: Any) -> AsyncIterator[pb.JobEvent]:
        assert requested == job_id
        for event in events:
            yield event

    return stream
