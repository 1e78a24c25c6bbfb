"""Feedback, LoRA status, lookalike flags and their review through the real gRPC service."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from db import catalog, moderation, searches
from db.clients import Role
from db.database import Database
from findlora_client import FindLoraClient, QueryImage, ServiceCallError
from findlora_client.protocol import Reason
from inference_service.config import Settings
from protos import findlora_pb2 as pb
from tests.helpers.service import ServedCatalog, served_catalog
from tests.helpers.voters import pseudonym

pytestmark = pytest.mark.db


@pytest.fixture
async def served(settings: Settings, tmp_path: Path) -> AsyncIterator[ServedCatalog]:
    async with served_catalog(settings, tmp_path) as served:
        yield served


@pytest.fixture
async def client(served: ServedCatalog) -> AsyncIterator[FindLoraClient]:
    async with served.client(Role.ADMIN) as client:  # takedowns need admin
        yield client


def query(served: ServedCatalog, slug: str) -> list[QueryImage]:
    return [QueryImage(served.reference_bytes(slug), "query.png", "image/png")]


async def slugs_found(client: FindLoraClient, served: ServedCatalog, slug: str) -> list[str]:
    response = await client.search(query(served, slug), top_k=50)
    return [m.slug for m in response.matches]


async def test_a_second_vote_replaces_the_first(
    client: FindLoraClient, served: ServedCatalog, db: Database, settings: Settings
) -> None:
    response = await client.search(query(served, "style-02"), top_k=3)
    search_id, lora_id = response.search_id, response.matches[0].lora_id

    assert await client.record_feedback(search_id, lora_id, up=True, user="u1") is True
    assert await client.record_feedback(search_id, lora_id, up=False, user="u1") is False
    assert await client.record_feedback(search_id, lora_id, up=True, user="u2") is True

    expected = [
        (lora_id, pseudonym(settings, search_id, "u1"), -1),
        (lora_id, pseudonym(settings, search_id, "u2"), 1),
    ]
    assert sorted(await db.run(searches.votes, uuid.UUID(search_id))) == sorted(expected)


async def test_feedback_on_a_lora_outside_the_ranking_is_rejected(
    client: FindLoraClient, served: ServedCatalog
) -> None:
    response = await client.search(query(served, "style-02"), top_k=3)
    with pytest.raises(ServiceCallError) as caught:
        await client.record_feedback(response.search_id, 999_999, up=True, user="u1")
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "not one of this search's results" in caught.value.message


async def test_hide_restore_and_final_takedown_are_audited(
    client: FindLoraClient, served: ServedCatalog, db: Database
) -> None:
    assert "style-01" in await slugs_found(client, served, "style-01")

    hidden = await client.set_lora_status("style-01", pb.LORA_STATUS_HIDDEN, moderator="mod")
    assert hidden.status == pb.LORA_STATUS_HIDDEN
    assert "style-01" not in await slugs_found(client, served, "style-01")

    await client.set_lora_status("https://example.org/style-01", pb.LORA_STATUS_ACTIVE, moderator="mod")
    assert "style-01" in await slugs_found(client, served, "style-01")

    await client.set_lora_status("style-01", pb.LORA_STATUS_TAKEN_DOWN, moderator="mod", reason="dmca")
    with pytest.raises(ServiceCallError) as caught:
        await client.set_lora_status("style-01", pb.LORA_STATUS_ACTIVE, moderator="mod")
    assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "style-01" not in await slugs_found(client, served, "style-01")

    actions = [(e.actor, e.action, e.client) for e in await db.run(moderation.audit_entries, "style-01")]
    assert actions == [
        ("mod", "lora_hidden", "test-admin"),
        ("mod", "lora_active", "test-admin"),
        ("mod", "lora_taken_down", "test-admin"),
    ]


@pytest.mark.parametrize("ref", ["no-such-lora", "²", "9" * 30])
async def test_unknown_lora_is_not_found(client: FindLoraClient, ref: str) -> None:
    # "²" is a digit to str.isdigit but not to int(); 30 nines are past a bigint id
    with pytest.raises(ServiceCallError) as caught:
        await client.set_lora_status(ref, pb.LORA_STATUS_HIDDEN, moderator="mod")
    assert caught.value.code == grpc.StatusCode.NOT_FOUND


async def test_flag_evidence_review_and_takedown(
    client: FindLoraClient, served: ServedCatalog, db: Database
) -> None:
    before = await client.search(query(served, "style-03"), top_k=10)
    assert before.matches[0].slug == "style-03"

    flag = await client.flag_lookalike("style-03", query(served, "style-03"), note="mine", reporter="artist")
    assert flag.status == pb.FLAG_STATUS_OPEN
    assert flag.slug == "style-03"
    assert flag.evidence.rank == 1
    assert flag.evidence.catalog_size == 6
    assert flag.evidence.style_distance == pytest.approx(before.matches[0].style_distance, rel=1e-4)
    assert len(flag.evidence.nearest_transfers) == 3
    assert all(t.thumbnail for t in flag.evidence.nearest_transfers)

    open_flags = await client.list_flags(pb.FLAG_STATUS_OPEN)
    assert [f.flag_id for f in open_flags] == [flag.flag_id]

    decided = await client.review_flag(flag.flag_id, approve=True, moderator="mod", reason="clear copy")
    assert decided.status == pb.FLAG_STATUS_APPROVED
    assert decided.reviewer == "mod"
    assert decided.HasField("decided_at")

    assert "style-03" not in await slugs_found(client, served, "style-03")
    # A ranking stored before the takedown no longer shows it either.
    page = await client.get_page(before.search_id, 0, 10)
    assert "style-03" not in [m.slug for m in page.matches]

    with pytest.raises(ServiceCallError) as caught:
        await client.review_flag(flag.flag_id, approve=False, moderator="mod2")
    assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "already approved by mod" in caught.value.message
    assert await client.list_flags(pb.FLAG_STATUS_OPEN) == []

    actions = [(e.actor, e.action, e.client) for e in await db.run(moderation.audit_entries, "style-03")]
    assert actions == [
        ("artist", "flag_lookalike", "test-admin"),
        ("mod", "lora_taken_down", "test-admin"),  # as a direct takedown is audited
        ("mod", "flag_approved", "test-admin"),
    ]
    [takedown] = [
        e for e in await db.run(moderation.audit_entries, "style-03") if e.action == "lora_taken_down"
    ]
    assert (takedown.details["from"], takedown.details["to"]) == ("active", "taken_down")


async def test_a_hidden_or_taken_down_lora_cannot_be_flagged_or_told_apart_from_none(
    client: FindLoraClient, served: ServedCatalog, db: Database
) -> None:
    """A flag by numeric id named any LoRA, hidden or taken down too, with its references."""
    await client.set_lora_status("style-01", pb.LORA_STATUS_HIDDEN, moderator="mod")
    await client.set_lora_status("style-02", pb.LORA_STATUS_TAKEN_DOWN, moderator="mod")
    hidden, gone = [await db.run(catalog.lora_by_slug, slug) for slug in ("style-01", "style-02")]
    assert hidden is not None
    assert gone is not None
    for ref in (str(hidden.id), str(gone.id), "style-02"):
        with pytest.raises(ServiceCallError) as caught:
            await client.flag_lookalike(ref, query(served, "style-01"), reporter="artist")
        assert caught.value.code == grpc.StatusCode.NOT_FOUND
        assert caught.value.message == f"no LoRA matches {ref!r}"
    # Taken down while the artwork was being compared: the insert refuses it under the row lock.
    with pytest.raises(moderation.LoraNotFlaggable):
        await db.run(moderation.insert_flag, lora_id=gone.id, reporter="a", note="", evidence={})


async def test_a_flag_is_approved_by_another_person_than_its_reporter(
    served: ServedCatalog, db: Database
) -> None:
    """A moderator filing a flag and approving it took a LoRA down alone, without the admin
    role a direct takedown needs. Withdrawing (dismissing) one's own report stays allowed."""
    async with served.client(Role.MODERATE) as moderator:
        flag = await moderator.flag_lookalike("style-02", query(served, "style-02"), reporter="discord:7")
        with pytest.raises(ServiceCallError) as caught:
            await moderator.review_flag(flag.flag_id, approve=True, moderator="discord:7")
        assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION
        assert caught.value.reason is Reason.OWN_FLAG  # the bots say it, not "already reviewed"
        assert "another moderator has to approve it" in caught.value.message
        assert "style-02" in await slugs_found(moderator, served, "style-02")
        [still_open] = await moderator.list_flags(pb.FLAG_STATUS_OPEN)
        assert still_open.flag_id == flag.flag_id
        decided = await moderator.review_flag(flag.flag_id, approve=True, moderator="discord:8")
        assert decided.status == pb.FLAG_STATUS_APPROVED
        own = await moderator.flag_lookalike("style-05", query(served, "style-05"), reporter="discord:7")
        withdrawn = await moderator.review_flag(own.flag_id, approve=False, moderator="discord:7")
        assert withdrawn.status == pb.FLAG_STATUS_DISMISSED


async def test_dismissed_flag_leaves_the_lora_searchable(
    client: FindLoraClient, served: ServedCatalog
) -> None:
    flag = await client.flag_lookalike("style-04", query(served, "style-00"), reporter="artist")
    assert flag.evidence.rank > 1  # someone else's style: the flagged LoRA is not the nearest

    # The same artist again while theirs is open (two images sent at once in a chat): one flag,
    # one review card; another artist may report it too.
    artworks = query(served, "style-00")
    again, other = await asyncio.gather(
        client.flag_lookalike("style-04", artworks, reporter="artist"),
        client.flag_lookalike("style-04", artworks, reporter="artist"),
        return_exceptions=True,
    )
    assert isinstance(again, ServiceCallError) or isinstance(other, ServiceCallError)
    refused = again if isinstance(again, ServiceCallError) else other
    assert isinstance(refused, ServiceCallError)
    assert refused.code == grpc.StatusCode.ALREADY_EXISTS
    assert f"you have already reported style-04 (flag {flag.flag_id})" in refused.message
    second = await client.flag_lookalike("style-04", artworks, reporter="another-artist")
    await client.review_flag(second.flag_id, approve=False, moderator="mod")

    decided = await client.review_flag(flag.flag_id, approve=False, moderator="mod")
    assert decided.status == pb.FLAG_STATUS_DISMISSED
    assert "style-04" in await slugs_found(client, served, "style-04")
    listed = await client.list_flags(pb.FLAG_STATUS_DISMISSED)
    assert sorted(f.flag_id for f in listed) == sorted([flag.flag_id, second.flag_id])
    # Once it is decided, the artist may report the LoRA again.
    assert (await client.flag_lookalike("style-04", artworks, reporter="artist")).flag_id


async def test_registration_refuses_a_host_outside_the_allowlist(client: FindLoraClient) -> None:
    with pytest.raises(ServiceCallError) as caught:
        await client.register_lora("https://example.org/x.safetensors", pb.LoraMetadata(), requested_by="m")
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "downloads from example.org are not allowed" in caught.value.message


async def test_a_nul_character_in_a_note_is_invalid_argument(
    client: FindLoraClient, served: ServedCatalog
) -> None:
    with pytest.raises(ServiceCallError) as info:
        await client.flag_lookalike(
            "style-03", query(served, "style-03"), note="bad\x00note", reporter="artist"
        )
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "cannot be stored" in info.value.message
