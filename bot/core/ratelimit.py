"""Per-user rate limits (sliding window) with a cooldown message for the user."""

from __future__ import annotations

import math
import time
from collections import defaultdict, deque
from collections.abc import Callable


class RateLimiter:
    """At most `limit` actions per `window_s` seconds per key; in-process (bots are stateless, so a
    restart forgets the window, which is acceptable for abuse throttling)."""

    def __init__(self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError("limit must be >= 1 and window_s > 0")
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._hits: defaultdict[str, deque[float]] = defaultdict(deque)

    def try_acquire(self, key: str) -> float:
        """0 when the action may go ahead (and counts it); else seconds until it may."""
        now = self._clock()
        hits = self._hits[key]
        while hits and hits[0] <= now - self.window_s:
            hits.popleft()
        if len(hits) >= self.limit:
            return hits[0] + self.window_s - now
        hits.append(now)
        return 0.0

    def release(self, key: str) -> None:
        """Give back the latest action of `key` (it did not happen after all)."""
        hits = self._hits.get(key)
        if hits:
            hits.pop()


def wait_text(retry_after_s: float) -> str:
    seconds = max(1, math.ceil(retry_after_s))
    return f"{seconds} s" if seconds < 120 else f"{math.ceil(seconds / 60)} min"


def cooldown_message(what: str, retry_after_s: float) -> str:
    return f"You're {what} too quickly; try again in {wait_text(retry_after_s)}."
