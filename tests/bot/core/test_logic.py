"""Pure logic of the bot core: paging refs, rate limits, permissions, NSFW rules, replies, jobs."""

from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from PIL import Image

from bot.core.jobs import follow_job, progress_text
from bot.core.nsfw import NsfwPolicy
from bot.core.paging import PageRef, footer_text, parse_footer
from bot.core.permissions import ModeratorPolicy
from bot.core.ratelimit import RateLimiter, cooldown_message
from bot.core.rendering import TransferImage, contact_sheet, render_page
from bot.core.replies import (
    CATALOG_DOWN,
    EXPIRED,
    NOT_ACCEPTED,
    SERVICE_BUSY,
    SERVICE_DOWN,
    SERVICE_SLOW,
    friendly_error,
)
from findlora_client import Reason, ServiceCallError, ServiceTimeout, ServiceUnreachable
from protos import findlora_pb2 as pb

SEARCH = str(uuid.uuid4())


def test_footer_round_trips_the_page_ref() -> None:
    ref = PageRef(SEARCH, 5, 5)
    text = footer_text(ref, 12)
    assert "results 6–10 of 12" in text
    assert parse_footer(text) == ref
    assert parse_footer("someone else's footer") is None


def test_paging_stops_at_both_ends() -> None:
    first = PageRef(SEARCH, 0, 5)
    assert first.previous() is None
    second = first.next(12)
    assert second == PageRef(SEARCH, 5, 5)
    last = second.next(12)
    assert last == PageRef(SEARCH, 10, 5)
    assert last.next(12) is None
    assert last.previous() == second


def test_rate_limiter_window_and_cooldown() -> None:
    now = [100.0]
    limiter = RateLimiter(2, 60, clock=lambda: now[0])
    assert limiter.try_acquire("u") == 0
    assert limiter.try_acquire("u") == 0
    assert limiter.try_acquire("u") == pytest.approx(60)
    assert limiter.try_acquire("other") == 0
    now[0] += 45
    assert limiter.try_acquire("u") == pytest.approx(15)
    now[0] += 15
    assert limiter.try_acquire("u") == 0
    assert cooldown_message("searching", 14.2) == "You're searching too quickly; try again in 15 s."


def test_moderators_by_role_or_user() -> None:
    policy = ModeratorPolicy.of(role_ids=[10], user_ids=[7])
    assert policy.allows(7)
    assert policy.allows(1, role_ids=[3, 10])
    assert not policy.allows(1, role_ids=[3])


def test_nsfw_only_where_allowed() -> None:
    policy = NsfwPolicy.of([55])
    assert policy.allows(1, age_restricted=True)
    assert policy.allows(55)
    assert not policy.allows(1)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ServiceUnreachable("x", grpc.StatusCode.UNAVAILABLE), SERVICE_DOWN),
        (ServiceTimeout("x", grpc.StatusCode.DEADLINE_EXCEEDED), SERVICE_SLOW),
        # The service answered and its database did not: not "something went wrong on my side".
        (
            ServiceCallError(
                "the catalog database is unavailable; try again",
                grpc.StatusCode.UNAVAILABLE,
                Reason.DATABASE_UNAVAILABLE,
            ),
            CATALOG_DOWN,
        ),
        (
            ServiceCallError(
                "this search has expired, run it again",
                grpc.StatusCode.FAILED_PRECONDITION,
                Reason.SEARCH_EXPIRED,
            ),
            EXPIRED,
        ),
        # The reason decides, not the words: a purged search and an expired one read the same.
        (ServiceCallError("gone", grpc.StatusCode.NOT_FOUND, Reason.SEARCH_NOT_FOUND), EXPIRED),
        (
            ServiceCallError("the flag has expired", grpc.StatusCode.FAILED_PRECONDITION),
            "The flag has expired.",
        ),
        (
            ServiceCallError("you filed this report", grpc.StatusCode.FAILED_PRECONDITION, Reason.OWN_FLAG),
            "You filed this report.",
        ),
        (
            ServiceCallError(
                "too many requests", grpc.StatusCode.RESOURCE_EXHAUSTED, Reason.RATE_LIMITED, retry_after_s=7
            ),
            "The findlora service is getting too many requests from you; try again in 7 s.",
        ),
        (ServiceCallError("queue full", grpc.StatusCode.RESOURCE_EXHAUSTED), SERVICE_BUSY),
        (
            ServiceCallError("the slug 'x' is already taken", grpc.StatusCode.ALREADY_EXISTS),
            "The slug 'x' is already taken.",
        ),
        (ServiceCallError("no LoRA matches 'x'", grpc.StatusCode.NOT_FOUND), "No LoRA matches 'x'."),
        (ServiceCallError("unknown or revoked client token", grpc.StatusCode.UNAUTHENTICATED), NOT_ACCEPTED),
        (
            ServiceCallError("taking a LoRA down needs the admin role", grpc.StatusCode.PERMISSION_DENIED),
            "This bot is not allowed to do that (taking a LoRA down needs the admin role).",
        ),
    ],
)
def test_friendly_errors(error: Exception, expected: str) -> None:
    assert friendly_error(error) == expected


def test_internal_errors_say_nothing_of_the_internals() -> None:
    text = friendly_error(ServiceCallError("Traceback: psycopg blew up", grpc.StatusCode.INTERNAL))
    assert "psycopg" not in text
    assert "Traceback" not in friendly_error(RuntimeError("Traceback (most recent call last)"))


def webp(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), colour).save(out, format="WEBP")
    return out.getvalue()


def test_render_page_drops_nsfw_where_not_allowed_and_builds_a_sheet() -> None:
    thumb = pb.SampleTransfer(sample_id="s1", thumbnail=webp((255, 0, 0)), mime_type="image/webp")
    response = pb.SearchResponse(
        search_id=SEARCH,
        pseudo_prompt="a cat",
        offset=0,
        total=2,
        matches=[
            pb.Match(rank=1, lora_id=1, slug="a", name="A", nsfw=True, transfers=[thumb]),
            pb.Match(rank=2, lora_id=2, slug="b", name="B", transfers=[thumb, thumb]),
        ],
    )
    safe = render_page(response, 5, allow_nsfw=False)
    assert [c.slug for c in safe.cards] == ["b"]
    assert [c.slug for c in render_page(response, 5, allow_nsfw=True).cards] == ["a", "b"]
    sheet = contact_sheet(safe.cards[0].transfers, height=48)
    assert sheet is not None
    with Image.open(io.BytesIO(sheet)) as image:
        assert image.size == (64 * 2 + 4, 48)
    assert contact_sheet([TransferImage("x", "x.webp", b"junk", "image/webp", 0.0)]) is None


async def fake_stream(events: list[pb.JobEvent]) -> AsyncIterator[pb.JobEvent]:
    for event in events:
        yield event


async def test_follow_job_throttles_but_always_shows_the_end() -> None:
    events = [
        pb.JobEvent(job_id="j", state=pb.JOB_STATE_QUEUED),
        pb.JobEvent(job_id="j", state=pb.JOB_STATE_RUNNING, step="fetch", progress=0.1),
        pb.JobEvent(job_id="j", state=pb.JOB_STATE_RUNNING, step="generate", progress=0.5),
        pb.JobEvent(
            job_id="j",
            state=pb.JOB_STATE_SUCCEEDED,
            progress=1.0,
            slug="new-style",
            lookalikes=[pb.LookalikeWarning(similar_slug="old-style", centroid_distance=0.1, threshold=0.2)],
        ),
    ]
    shown: list[str] = []

    async def show(text: str) -> None:
        shown.append(text)

    last = await follow_job(fake_stream(events), show, min_interval_s=10, clock=lambda: 0.0)
    assert last is not None
    assert last.state == pb.JOB_STATE_SUCCEEDED
    assert len(shown) == 2  # the first event, then the final one; the middle ones were throttled
    assert "queued" in shown[0]
    assert "Registered as `new-style`" in shown[1]
    assert "Looks like `old-style`" in shown[1]


def test_progress_text_of_a_failure() -> None:
    text = progress_text(pb.JobEvent(state=pb.JOB_STATE_FAILED, step="fetch", message="host not allowed"))
    assert text.startswith("❌ Registration failed · step fetch")
    assert "host not allowed" in text
