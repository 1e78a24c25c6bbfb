"""Per-requester token buckets: each requester may spend `burst` requests at once and `rate` a
second after that; beyond it a request is refused with the seconds to wait.

The table of buckets is bounded: a bucket that has refilled completely says nothing a new one
would not, so it is dropped when it is next in line; past `max_keys` the least recently seen key
is dropped even if it is not full (it starts again with a full burst, the price of a bound).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from findlora_client.protocol import RETRY_AFTER_TRAILER, Reason
from inference_service.config import Settings
from inference_service.errors import ResourceExhausted


class RateLimited(ResourceExhausted):
    """Too many requests from one requester; carries the wait as trailing metadata."""

    default_reason = Reason.RATE_LIMITED

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"too many requests; try again in {retry_after_s} s")
        self.retry_after_s = retry_after_s

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return ((RETRY_AFTER_TRAILER, str(self.retry_after_s)),)


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    def __init__(
        self, rate: float, burst: int, max_keys: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """`rate` <= 0 turns limiting off."""
        if burst < 1 or max_keys < 1:
            raise ValueError("burst and max_keys must be >= 1")
        self.rate, self.burst, self.max_keys = rate, burst, max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()  # least recently seen first

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenBuckets:
        return cls(settings.rate_limit_per_s, settings.rate_limit_burst, settings.rate_limit_max_keys)

    def __len__(self) -> int:
        return len(self._buckets)

    def _refilled(self, bucket: _Bucket, now: float) -> float:
        return min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate)

    def _evict(self, now: float) -> None:
        """Drop full (idle) buckets from the old end, then the oldest beyond max_keys."""
        while self._buckets:
            key, oldest = next(iter(self._buckets.items()))
            if self._refilled(oldest, now) < self.burst and len(self._buckets) <= self.max_keys:
                break
            del self._buckets[key]

    def take(self, key: str) -> None:
        """Spend one token of `key`, or raise RateLimited with the whole seconds until one is back."""
        if self.rate <= 0:
            return
        now = self._clock()
        bucket = self._buckets.pop(key, None)
        tokens = float(self.burst) if bucket is None else self._refilled(bucket, now)
        allowed = tokens >= 1.0
        self._buckets[key] = _Bucket(tokens - 1.0 if allowed else tokens, now)
        self._evict(now)
        if not allowed:
            raise RateLimited(max(1, math.ceil((1.0 - tokens) / self.rate)))


def peer_host(peer: str) -> str:
    """A gRPC peer without its port ("ipv4:10.0.0.5:41234" -> "ipv4:10.0.0.5"): a caller's
    connections share one bucket."""
    kind, _, address = peer.partition(":")
    if kind in ("ipv4", "ipv6") and ":" in address:
        return f"{kind}:{address.rsplit(':', 1)[0]}"
    return peer


def requester_key(client: str, requested_by: str, peer: str) -> str:
    """The requester a client names (each client's users are its own: a client cannot spend
    another's buckets), else the caller's address."""
    return f"user:{client}/{requested_by}" if requested_by else f"peer:{client}/{peer_host(peer)}"
