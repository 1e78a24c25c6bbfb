"""The rate limit per client: a client cannot escape it by naming a new requester per request, and
one client's flood cannot reset another client's limits by pushing its buckets out of the table.

The buckets are built and spent the way the servicer does it (`requester_key` of the authenticated
client, `requested_by` and the peer), with a clock the test moves.
"""

from __future__ import annotations

import contextlib

import pytest

from inference_service.config import Settings
from inference_service.limits import RateLimited, TokenBuckets, requester_key

PEER = "ipv4:10.0.0.5:41234"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_client_rotating_requested_by_is_still_limited() -> None:
    clock = Clock()
    # The defaults: 0.5/s and a burst of 10 per requester.
    buckets = TokenBuckets(0.5, 10, 10_000, clock)
    allowed, refusals = 0, []
    for i in range(1000):
        clock.now += 0.01  # 1,000 requests in 10 s, each naming a requester never seen before
        try:
            buckets.take(requester_key("script", f"user-{i}", PEER))
            allowed += 1
        except RateLimited as exc:
            refusals.append(exc)
    assert refusals, "a client naming a new requester per request was never limited"
    # The client's bucket (ten times a requester's: a burst of 100, then 5/s) bounds them all.
    assert allowed <= 100 + 5 * 10 + 1
    assert refusals[0].message == "too many requests; try again in 1 s"
    # Another client has a bucket of its own.
    buckets.take(requester_key("discord-bot", "user-0", PEER))


def test_a_flood_from_one_client_does_not_reset_another_clients_requester() -> None:
    clock = Clock()
    buckets = TokenBuckets(0.5, 1, 8, clock)  # a table of 8 requesters
    buckets.take(requester_key("x", "alice", PEER))
    with pytest.raises(RateLimited):
        buckets.take(requester_key("x", "alice", PEER))
    for i in range(300):  # client "c" floods far more distinct requesters than the table holds
        with contextlib.suppress(RateLimited):
            buckets.take(requester_key("c", f"flood-{i}", PEER))
    with pytest.raises(RateLimited) as info:  # alice's drained bucket was not dropped for a full one
        buckets.take(requester_key("x", "alice", PEER))
    assert info.value.retry_after_s == 2


def test_eviction_stays_within_the_flooding_client_without_a_client_bucket() -> None:
    clock = Clock()
    buckets = TokenBuckets(0.5, 1, 8, clock, client_rate=0)  # the per-client table alone
    buckets.take(requester_key("x", "alice", PEER))
    for i in range(300):  # every one admitted: only the table's bound is at work
        buckets.take(requester_key("c", f"flood-{i}", PEER))
    assert len(buckets) == 8 + 1  # c's requesters are bounded; alice's bucket is kept
    with pytest.raises(RateLimited):
        buckets.take(requester_key("x", "alice", PEER))


def test_a_refusal_spends_neither_bucket() -> None:
    clock = Clock()
    buckets = TokenBuckets(0.5, 1, 100, clock, client_rate=1.0, client_burst=3)
    buckets.take(requester_key("bot", "alice", PEER))
    for _ in range(5):  # alice's own refusals cost the client nothing...
        with pytest.raises(RateLimited):
            buckets.take(requester_key("bot", "alice", PEER))
    buckets.take(requester_key("bot", "bob", PEER))
    buckets.take(requester_key("bot", "carol", PEER))
    with pytest.raises(RateLimited) as info:  # ...the client's bucket is empty now
        buckets.take(requester_key("bot", "dave", PEER))
    assert info.value.retry_after_s == 1
    assert len(buckets) == 3  # and its refusal left dave no bucket
    clock.now += 1.0
    buckets.take(requester_key("bot", "dave", PEER))


def test_the_client_bucket_comes_from_the_settings() -> None:
    settings = Settings(rate_limit_client_per_s=0.25, rate_limit_client_burst=2)
    buckets = TokenBuckets.from_settings(settings)
    buckets.take(requester_key("bot", "alice", PEER))
    buckets.take(requester_key("bot", "bob", PEER))
    with pytest.raises(RateLimited) as info:
        buckets.take(requester_key("bot", "carol", PEER))
    assert info.value.retry_after_s == 4
    # Unset: ten times a requester's, 0: no client bucket.
    unset = Settings(
        rate_limit_per_s=0.5, rate_limit_burst=10, rate_limit_client_per_s=None, rate_limit_client_burst=None
    )
    default = TokenBuckets.from_settings(unset)
    for i in range(100):
        default.take(requester_key("bot", f"u{i}", PEER))
    with pytest.raises(RateLimited):
        default.take(requester_key("bot", "u100", PEER))
    off = TokenBuckets.from_settings(Settings(rate_limit_client_per_s=0))
    for i in range(1000):
        off.take(requester_key("bot", f"u{i}", PEER))
