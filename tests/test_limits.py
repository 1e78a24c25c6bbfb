"""Per-requester token buckets: burst, refill, retry hint, a bounded table."""

from __future__ import annotations

import pytest

from findlora_client.protocol import RETRY_AFTER_TRAILER
from inference_service.limits import RateLimited, Requester, TokenBuckets, peer_host, requester_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_rate_with_the_wait_in_whole_seconds() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=0.25, burst=2, clock=clock)
    buckets.take(Requester("c", "a"))
    buckets.take(Requester("c", "a"))
    with pytest.raises(RateLimited) as info:
        buckets.take(Requester("c", "a"))
    assert info.value.retry_after_s == 4
    assert info.value.message == "too many requests; try again in 4 s"
    assert info.value.trailing_metadata() == ((RETRY_AFTER_TRAILER, "4"),)
    buckets.take(Requester("c", "b"))  # its own bucket
    clock.now += 3.9
    with pytest.raises(RateLimited) as info:
        buckets.take(Requester("c", "a"))
    assert info.value.retry_after_s == 1
    clock.now += 0.2
    buckets.take(Requester("c", "a"))


def test_rate_zero_turns_limiting_off() -> None:
    buckets = TokenBuckets(rate=0, burst=1)
    for _ in range(100):
        buckets.take(Requester("c", "a"))
    assert len(buckets) == 0


def test_idle_keys_are_dropped_and_the_table_is_bounded() -> None:
    clock = Clock()
    # The requester table alone: no client bucket to stop the flood below.
    buckets = TokenBuckets(rate=1.0, burst=5, max_keys=100, clock=clock, client_rate=0)
    for i in range(50):
        buckets.take(Requester("c", f"user-{i}"))
    assert len(buckets) == 50
    clock.now += 0.5  # half a token back: nobody is full yet
    buckets.take(Requester("c", "user-50"))
    assert len(buckets) == 51
    clock.now += 10.0  # everyone else refilled: a full bucket is no different from none
    buckets.take(Requester("c", "fresh"))
    assert len(buckets) == 1
    for i in range(1000):  # many requesters at once: never more than max_keys buckets
        buckets.take(Requester("c", f"flood-{i}"))
    assert len(buckets) == 100


def test_keys_name_the_requester_else_the_callers_host() -> None:
    assert requester_key("discord", "U123", "ipv4:10.0.0.5:41234") == ("discord", "user:discord/U123")
    assert requester_key("slack", "U123", "ipv4:10.0.0.5:41234") == ("slack", "user:slack/U123")
    assert requester_key("cli", "", "ipv4:10.0.0.5:41234") == ("cli", "peer:cli/ipv4:10.0.0.5")
    assert peer_host("ipv6:[::1]:5000") == "ipv6:[::1]"
    assert peer_host("unix:/tmp/findlora.sock") == "unix:/tmp/findlora.sock"
