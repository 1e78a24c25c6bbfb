"""Where one request's time goes, measured by the service itself.

The RPC wrapper (servicer.rpc) runs each handler under a StageTimer; code deep in the search path
times its stage with `stage("walk")` without being handed the timer (a context variable, which
asyncio tasks and asyncio.to_thread inherit). The wrapper sends the result back as the
`server-timing` trailer (findlora_client.timing) and logs it on the call's one line. Outside a
call (benchmarks, one-shot commands) `stage` and `count` do nothing.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

import grpc

from findlora_client.timing import SERVER_TIMING_TRAILER, TOTAL, format_server_timing

T = TypeVar("T")


class StageTimer:
    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.seconds: dict[str, float] = {}  # per stage, summed over its runs, in first-run order
        self.counts: dict[str, int] = {}

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    async def run(self, work: Awaitable[T]) -> T:
        """Await `work` (a handler's coroutine, not started yet) with this as its timer."""
        token = _current.set(self)
        try:
            return await work
        finally:
            _current.reset(token)

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def add_count(self, name: str, value: int) -> None:
        self.counts[name] = self.counts.get(name, 0) + value

    def durations_ms(self, total_s: float) -> dict[str, float]:
        return {**{k: v * 1000.0 for k, v in self.seconds.items()}, TOTAL: total_s * 1000.0}

    def trailer(self, total_s: float) -> str:
        return format_server_timing(self.durations_ms(total_s), self.counts)

    def report(self, context: grpc.aio.ServicerContext, total_s: float) -> dict[str, Any]:
        """Set the call's server-timing trailer; the fields of its log line."""
        context.set_trailing_metadata(((SERVER_TIMING_TRAILER, self.trailer(total_s)),))
        return self.log_fields()

    def log_fields(self) -> dict[str, Any]:
        """Fields for the call's log line: nothing when no stage ran."""
        fields: dict[str, Any] = {}
        if self.seconds:
            fields["stages_ms"] = {k: round(v * 1000.0, 2) for k, v in self.seconds.items()}
        if self.counts:
            fields["counts"] = dict(self.counts)
        return fields


_current: ContextVar[StageTimer | None] = ContextVar("findlora_stage_timer", default=None)


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Add the block's wall time to stage `name` of the current request (if any)."""
    timer = _current.get()
    if timer is None:
        yield
        return
    started = time.perf_counter()
    try:
        yield
    finally:
        timer.add(name, time.perf_counter() - started)


def count(name: str, value: int) -> None:
    """Add `value` to a count of the current request (if any): how much work a stage did."""
    timer = _current.get()
    if timer is not None:
        timer.add_count(name, value)
