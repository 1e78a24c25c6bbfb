"""Where the service spent a call's time: its `server-timing` trailer (the HTTP Server-Timing
syntax, durations in milliseconds), written by the service and read back here.

A caller that wants the figures collects them without changing how it calls the client:

    with collect_server_timing() as calls:
        await run_search(...)          # any code that calls FindLoraClient in this task
    calls[-1].timing.durations_ms      # {"decode": 3.1, "encode": 41.0, ..., "total": 97.5}
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

SERVER_TIMING_TRAILER = "server-timing"
TOTAL = "total"  # the whole handler, measured by the service around every stage
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class ServerTiming:
    durations_ms: dict[str, float] = field(default_factory=dict)  # per stage, in the order run
    counts: dict[str, int] = field(default_factory=dict)  # facts of the work (candidates scored)

    @property
    def total_ms(self) -> float | None:
        return self.durations_ms.get(TOTAL)


@dataclass(frozen=True)
class CallTiming:
    method: str  # the RPC, e.g. "Search"
    timing: ServerTiming


def format_server_timing(durations_ms: Mapping[str, float], counts: Mapping[str, int]) -> str:
    """`decode;dur=1.234, encode;dur=40.1, candidates;desc=812`."""
    for name in (*durations_ms, *counts):
        if not _NAME.match(name):
            raise ValueError(f"not a server-timing metric name: {name!r}")
    parts = [f"{name};dur={ms:.3f}" for name, ms in durations_ms.items()]
    parts += [f"{name};desc={value}" for name, value in counts.items()]
    return ", ".join(parts)


def parse_server_timing(value: str) -> ServerTiming:
    """The metrics of a trailer; entries this client does not understand are skipped."""
    timing = ServerTiming()
    for entry in value.split(","):
        name, *params = (part.strip() for part in entry.split(";"))
        if not _NAME.match(name):
            continue
        for param in params:
            key, _, raw = param.partition("=")
            try:
                if key == "dur":
                    timing.durations_ms[name] = float(raw)
                elif key == "desc":
                    timing.counts[name] = int(raw.strip('"'))
            except ValueError:
                continue
    return timing


_collecting: ContextVar[list[CallTiming] | None] = ContextVar("findlora_server_timing", default=None)


@contextmanager
def collect_server_timing() -> Iterator[list[CallTiming]]:
    """Every call this task (and the tasks it starts) makes in the block appends its timing."""
    calls: list[CallTiming] = []
    token = _collecting.set(calls)
    try:
        yield calls
    finally:
        _collecting.reset(token)


def collecting() -> bool:
    return _collecting.get() is not None


def record(method: str, trailers: Iterable[tuple[str, str | bytes]]) -> None:
    """Keep a finished call's timing when collecting (a service without the trailer: empty)."""
    calls = _collecting.get()
    if calls is None:
        return
    value = next((v for k, v in trailers if k == SERVER_TIMING_TRAILER), "")
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    calls.append(CallTiming(method, parse_server_timing(value)))
