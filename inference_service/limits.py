"""Token buckets for image requests, two per request: the authenticated client's own, then the
one of the requester it names. A requester may spend `burst` requests at once and `rate` a second
after that; a client, all its requesters together, `client_burst` and `client_rate` (by default
ten times a requester's), so a client that names a new `requested_by` per request is still
limited. Beyond either, a request is refused with the seconds to wait and spends neither.

The tables are bounded: a bucket that has refilled completely says nothing a new one would not,
so it is dropped when it is next in line; past `max_keys` requesters of one client its least
recently seen is dropped even if it is not full (it starts again with a full burst, the price of
a bound). Each client has a table of its own, so only its own requests can push its requesters
out: one client's flood never resets another client's limits.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from findlora_client.protocol import RETRY_AFTER_TRAILER, Reason
from inference_service.config import Settings
from inference_service.errors import ResourceExhausted

# A client's bucket, unless configured: ten of its requesters at full speed (the bots' users search
# far less: the bots let each 6 searches a minute).
CLIENT_RATE_LIMIT_FACTOR = 10


class RateLimited(ResourceExhausted):
    """Too many requests from one requester or client; carries the wait as trailing metadata."""

    default_reason = Reason.RATE_LIMITED

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"too many requests; try again in {retry_after_s} s")
        self.retry_after_s = retry_after_s

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return ((RETRY_AFTER_TRAILER, str(self.retry_after_s)),)


class Requester(NamedTuple):
    client: str  # the authenticated client: never from the request
    key: str  # whom the client names, else the caller's address


@dataclass
class _Bucket:
    tokens: float
    updated: float


class _Table:
    """Buckets of one rate and burst, least recently seen first."""

    def __init__(self, rate: float, burst: int, max_keys: int | None) -> None:
        self.rate, self.burst, self.max_keys = rate, burst, max_keys
        self.buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self.buckets)

    def _refilled(self, bucket: _Bucket, now: float) -> float:
        return min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate)

    def touch(self, key: str, now: float) -> _Bucket:
        """`key`'s bucket refilled up to `now`, moved to the recent end."""
        bucket = self.buckets.pop(key, None)
        tokens = float(self.burst) if bucket is None else self._refilled(bucket, now)
        fresh = self.buckets[key] = _Bucket(tokens, now)
        return fresh

    def refused(self, bucket: _Bucket) -> RateLimited | None:
        """None when `bucket` has a token, else the refusal with the whole seconds until it has."""
        if bucket.tokens >= 1.0:
            return None
        return RateLimited(max(1, math.ceil((1.0 - bucket.tokens) / self.rate)))

    def evict(self, now: float) -> None:
        """Drop full (idle) buckets from the old end, then the oldest beyond max_keys."""
        while self.buckets:
            key, oldest = next(iter(self.buckets.items()))
            over = self.max_keys is not None and len(self.buckets) > self.max_keys
            if self._refilled(oldest, now) < self.burst and not over:
                break
            del self.buckets[key]


class TokenBuckets:
    def __init__(
        self,
        rate: float,
        burst: int,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        *,
        client_rate: float | None = None,
        client_burst: int | None = None,
    ) -> None:
        """`rate` <= 0 turns limiting off, `client_rate` <= 0 only the per-client bucket; None: ten
        times the requester's."""
        if client_rate is None:
            client_rate = CLIENT_RATE_LIMIT_FACTOR * rate
        if client_burst is None:
            client_burst = CLIENT_RATE_LIMIT_FACTOR * burst
        if burst < 1 or client_burst < 1 or max_keys < 1:
            raise ValueError("burst, client burst and max_keys must be >= 1")
        self.rate, self.burst, self.max_keys = rate, burst, max_keys
        self._clock = clock
        # Clients are authenticated (a table the operator keeps), so only idle ones are dropped.
        self._clients = _Table(client_rate, client_burst, None)
        self._requesters: dict[str, _Table] = {}  # per client: a flood evicts only its own keys

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenBuckets:
        return cls(
            settings.rate_limit_per_s,
            settings.rate_limit_burst,
            settings.rate_limit_max_keys,
            client_rate=settings.rate_limit_client_per_s,
            client_burst=settings.rate_limit_client_burst,
        )

    def __len__(self) -> int:
        """Requester buckets held, every client's together."""
        return sum(len(table) for table in self._requesters.values())

    def take(self, requester: Requester) -> None:
        """Spend one token of the client's bucket and one of the requester's, or neither: raise
        RateLimited with the whole seconds until the refusing bucket has one back."""
        if self.rate <= 0:
            return
        now = self._clock()
        try:
            client = self._clients.touch(requester.client, now) if self._clients.rate > 0 else None
            # The client's bucket first: a refused flood then creates no requester buckets at all.
            if client is not None and (refusal := self._clients.refused(client)) is not None:
                raise refusal
            table = self._requesters.get(requester.client)
            if table is None:
                table = self._requesters[requester.client] = _Table(self.rate, self.burst, self.max_keys)
            bucket = table.touch(requester.key, now)
            if (refusal := table.refused(bucket)) is not None:
                raise refusal
            bucket.tokens -= 1.0
            if client is not None:
                client.tokens -= 1.0
        finally:
            self._evict(requester.client, now)

    def _evict(self, client: str, now: float) -> None:
        self._clients.evict(now)
        table = self._requesters.get(client)
        if table is not None:
            table.evict(now)
            if not table:
                del self._requesters[client]


def peer_host(peer: str) -> str:
    """A gRPC peer without its port ("ipv4:10.0.0.5:41234" -> "ipv4:10.0.0.5"): a caller's
    connections share one bucket."""
    kind, _, address = peer.partition(":")
    if kind in ("ipv4", "ipv6") and ":" in address:
        return f"{kind}:{address.rsplit(':', 1)[0]}"
    return peer


def requester_key(client: str, requested_by: str, peer: str) -> Requester:
    """The requester a client names (each client's users are its own: a client cannot spend
    another's buckets), else the caller's address; the client's bucket is spent either way."""
    key = f"user:{client}/{requested_by}" if requested_by else f"peer:{client}/{peer_host(peer)}"
    return Requester(client, key)
