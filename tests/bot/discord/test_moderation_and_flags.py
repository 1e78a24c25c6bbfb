"""Moderator commands and the lookalike flow end to end: fake Discord edge, real service."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any
from unittest import mock

import discord
import pytest

from bot.core.permissions import NOT_A_MODERATOR
from bot.core.replies import NOT_ACCEPTED, friendly_error
from bot.discord.exts.flags._cog import SHEET_NAME
from bot.discord.exts.moderation._cog import split_trigger_words
from db.clients import Role
from findlora_client import QueryImage
from protos import findlora_pb2 as pb
from tests.bot.discord.conftest import MOD_ROLE, MODERATOR_ID, Harness, route_channels
from tests.helpers.discord_fakes import (
    custom_ids,
    make_interaction,
    make_member,
    make_message,
    messages_in,
    press,
)
from tests.helpers.jobs import (
    BOT_UPDATE_INTERVAL_S,
    LOOKALIKE,
    JobDriver,
    assert_progress_shown,
    in_background,
)
from tests.helpers.waits import eventually

pytestmark = pytest.mark.db
# On a host the service downloads from (example.org is not one: the refusal test's link).
URL_A = "https://huggingface.co/x/a/resolve/main/a.safetensors"
URL_B = "https://huggingface.co/x/b/resolve/main/b.safetensors"


def moderator() -> Any:
    return make_member(MODERATOR_ID, role_ids=(MOD_ROLE,))


async def result_titles(harness: Harness, bot: Any, channel: Any, slug: str) -> list[str]:
    interaction = make_interaction(bot, make_member(1), channel)
    cog = bot.get_cog("Search")
    await cog.findlora.callback(cog, interaction, image=harness.style_image(slug), top_k=10)
    # Titles are "#<rank> <name>"; the names alone say who is listed.
    return [str(e.title).split(" ", 1)[1] for e in interaction.followup.send.await_args.kwargs["embeds"]]


async def test_lora_hide_needs_a_moderator(harness: Harness, channel: Any) -> None:
    bot = await harness.bot()
    cog = bot.get_cog("Moderation")

    stranger = make_interaction(bot, make_member(1, role_ids=(1,)), channel)
    await cog.hide.callback(cog, stranger, lora="style-01")
    stranger.response.send_message.assert_awaited_once_with(NOT_A_MODERATOR, ephemeral=True)
    assert "Style 1" in await result_titles(harness, bot, channel, "style-01")

    mod = make_interaction(bot, moderator(), channel)
    await cog.hide.callback(cog, mod, lora="style-01", reason="reported")
    mod.followup.send.assert_awaited_once_with("`style-01` is now hidden.", ephemeral=True)
    assert "Style 1" not in await result_titles(harness, bot, channel, "style-01")

    restore = make_interaction(bot, moderator(), channel)
    await cog.restore.callback(cog, restore, lora="style-01")
    assert "Style 1" in await result_titles(harness, bot, channel, "style-01")


async def test_lora_takedown_of_an_unknown_lora_says_so(harness: Harness, channel: Any) -> None:
    bot = await harness.bot(Role.ADMIN)
    cog = bot.get_cog("Moderation")
    mod = make_interaction(bot, moderator(), channel)
    await cog.takedown.callback(cog, mod, lora="no-such-lora")
    mod.followup.send.assert_awaited_once_with("No LoRA matches 'no-such-lora'.", ephemeral=True)


async def test_takedown_needs_a_bot_whose_client_is_admin(harness: Harness, channel: Any) -> None:
    moderating = await harness.bot(Role.MODERATE)
    cog = moderating.get_cog("Moderation")
    mod = make_interaction(moderating, moderator(), channel)
    await cog.takedown.callback(cog, mod, lora="style-01")
    mod.followup.send.assert_awaited_once_with(
        "This bot is not allowed to do that (taking a LoRA down needs the admin role; client "
        "'test-moderate' holds search, moderate).",
        ephemeral=True,
    )
    assert "Style 1" in await result_titles(harness, moderating, channel, "style-01")

    admin = await harness.bot(Role.ADMIN)
    cog = admin.get_cog("Moderation")
    mod = make_interaction(admin, moderator(), channel)
    await cog.takedown.callback(cog, mod, lora="style-01")
    mod.followup.send.assert_awaited_once_with("`style-01` is now taken down.", ephemeral=True)
    assert "Style 1" not in await result_titles(harness, admin, channel, "style-01")


async def test_a_bot_with_a_revoked_token_says_so(harness: Harness, channel: Any) -> None:
    bot = await harness.bot(Role.SEARCH)
    async with harness.served.client(Role.ADMIN) as admin:
        assert await admin.revoke_client("test-search")
    interaction = make_interaction(bot, make_member(1), channel)
    cog = bot.get_cog("Search")
    await cog.findlora.callback(cog, interaction, image=harness.style_image("style-01"), top_k=10)
    interaction.followup.send.assert_awaited_once_with(NOT_ACCEPTED, ephemeral=True)


async def test_registerlora_denied_then_shows_the_services_refusal(harness: Harness, channel: Any) -> None:
    bot = await harness.bot()
    cog = bot.get_cog("Moderation")
    url = "https://example.org/x/y/style.safetensors"  # outside the service's download allowlist

    stranger = make_interaction(bot, make_member(1), channel)
    await cog.registerlora.callback(cog, stranger, url=url, name="Y")
    stranger.response.send_message.assert_awaited_once_with(NOT_A_MODERATOR, ephemeral=True)

    mod = make_interaction(bot, moderator(), channel)
    await cog.registerlora.callback(cog, mod, url=url, name="Y", trigger_words="a, b")
    text = str(mod.edit_original_response.await_args.kwargs["content"])  # in place of "thinking…"
    assert text.startswith("I can't do that: downloads from example.org are not allowed")


async def test_registerlora_renders_watchjob_progress(
    harness: Harness, channel: Any, jobs: JobDriver
) -> None:
    """The real service queues the job; its steps, written as a worker would, come back through
    WatchJob and are edited into the command's reply."""
    bot = await harness.bot()
    cog = bot.get_cog("Moderation")
    mod = make_interaction(bot, moderator(), channel)

    def shown() -> list[str]:
        return [c.kwargs["content"] for c in mod.edit_original_response.await_args_list]

    command = cog.registerlora.callback(cog, mod, url=URL_A, name="A", trigger_words="p, q")
    async with in_background(command) as following:
        job = await jobs.job_for(URL_A)
        assert job.metadata["trigger_words"] == ["p", "q"]
        assert job.requested_by == f"discord:{MODERATOR_ID}"
        await eventually(shown, "the queued state in the reply")
        await asyncio.sleep(BOT_UPDATE_INTERVAL_S)
        await jobs.run(job, "fetch", 0.1, "downloaded 3 MiB")
        await eventually(lambda: len(shown()) > 1, "the running step in the reply")
        await jobs.succeed(job, [LOOKALIKE])
        await asyncio.wait_for(following, 10)
    assert_progress_shown(shown())


async def test_registration_progress_outlives_the_interaction_token(
    harness: Harness, channel: Any, jobs: JobDriver
) -> None:
    """Discord's interaction token lasts 15 minutes; a registration can take longer. Its edits
    then failed and the moderator never saw the result: past the token, progress goes on in a
    direct message (or, DMs closed, the channel, mentioning only them)."""
    bot = await harness.bot()
    cog = bot.get_cog("Moderation")
    expired = discord.HTTPException(mock.Mock(status=401, reason="Unauthorized"), {"code": 50027})

    old = make_interaction(bot, moderator(), channel)
    old.created_at = discord.utils.utcnow() - timedelta(minutes=20)
    dm = make_message(bot.user.id)
    old.user.send = mock.AsyncMock(return_value=dm)
    async with in_background(cog.registerlora.callback(cog, old, url=URL_A, name="A")) as following:
        job = await jobs.job_for(URL_A)
        await eventually(lambda: old.user.send.await_count, "the progress in a DM")
        await jobs.succeed(job)
        await asyncio.wait_for(following, 10)
    old.edit_original_response.assert_not_awaited()
    old.user.send.assert_awaited_once()
    assert str(old.user.send.await_args.args[0]).startswith("⏳ Registration queued")
    assert dm.edit.await_args.kwargs["content"].endswith("Registered as `a`.")

    closed = moderator()
    closed.send = mock.AsyncMock(side_effect=discord.Forbidden(mock.Mock(status=403, reason="x"), "no DMs"))
    ageing = make_interaction(bot, closed, channel)
    ageing.edit_original_response.side_effect = expired  # the token ran out mid-job
    async with in_background(cog.registerlora.callback(cog, ageing, url=URL_B, name="B")) as following:
        job = await jobs.job_for(URL_B)
        await eventually(lambda: messages_in(channel), "the progress in the channel")
        await jobs.succeed(job)
        await asyncio.wait_for(following, 10)
    closed.send.assert_awaited_once()
    [posted] = messages_in(channel)
    assert posted.content.startswith(f"{closed.mention} ⏳ Registration queued")
    final = posted.edit.await_args.kwargs["content"]
    assert final.startswith(f"{closed.mention} ✅ Registration succeeded")
    assert final.endswith("Registered as `b`.")


def test_trigger_words_are_comma_separated() -> None:
    assert split_trigger_words(" a , b,,c ") == ["a", "b", "c"]
    assert split_trigger_words(None) == []


async def test_flag_review_takedown_and_the_artist_hears_back(
    harness: Harness, channel: Any, review_channel: Any, channels: dict[int, Any]
) -> None:
    bot = await harness.bot()
    flags = bot.get_cog("Flags")
    artist = make_member(42)
    assert (await result_titles(harness, bot, channel, "style-03"))[0] == "Style 3"

    with (
        route_channels(bot, channels),
        mock.patch.object(bot, "fetch_user", mock.AsyncMock(return_value=artist)),
    ):
        report = make_interaction(bot, artist, channel)
        await flags.flaglookalike.callback(
            flags,
            report,
            lora="https://example.org/style-03",
            artwork=harness.style_image("style-03"),
            note="mine",
        )
        report.response.defer.assert_awaited_once_with(ephemeral=True, thinking=True)
        told = report.followup.send.await_args
        assert told.kwargs["ephemeral"] is True
        assert "ranks **#1**" in told.kwargs["embed"].description

        card = messages_in(review_channel)[0]
        embed = card.embeds[0]
        assert embed.title == "Lookalike report: Style 3 (style-03)"
        fields = {f.name: f.value for f in embed.fields}
        assert fields["Reporter"] == "<@42>"
        assert fields["Note"] == "mine"
        sent = review_channel.send.await_args.kwargs
        assert "artwork-1.png" in [f.filename for f in sent["files"]]
        approve_id, dismiss_id = custom_ids(sent["view"])
        assert approve_id.endswith(":approve")

        # Only moderators, and only in the review channel, can decide.
        stranger = make_interaction(bot, make_member(1), review_channel)
        await press(stranger, approve_id)
        stranger.response.send_message.assert_awaited_once_with(NOT_A_MODERATOR, ephemeral=True)
        elsewhere = make_interaction(bot, moderator(), channel)
        await press(elsewhere, approve_id)
        elsewhere.response.send_message.assert_awaited_once_with(NOT_A_MODERATOR, ephemeral=True)

        decide = make_interaction(bot, moderator(), review_channel)
        await press(decide, approve_id)
        edited = decide.edit_original_response.await_args.kwargs
        assert edited["view"] is None
        decided_fields = {f.name: f.value for f in edited["embed"].fields}
        assert decided_fields["Status"] == "approved"
        assert decided_fields["Reviewer"] == f"<@{MODERATOR_ID}>"
        artist.send.assert_awaited_once()
        assert "taken down" in artist.send.await_args.args[0]

        # A second decision on the same card is refused politely.
        again = make_interaction(bot, moderator(), review_channel)
        await press(again, dismiss_id)
        assert "already approved" in str(again.followup.send.await_args.args[0])

    assert "Style 3" not in await result_titles(harness, bot, channel, "style-03")


async def test_an_nsfw_loras_transfers_are_shown_only_where_the_channel_allows_nsfw(
    harness: Harness, channel: Any, review_channel: Any, channels: dict[int, Any]
) -> None:
    """The artist's private reply and the review card carried an NSFW LoRA's sample transfers
    into any channel; search shows them only in age-restricted ones (a private reply included)."""
    bot = await harness.bot()
    flags = bot.get_cog("Flags")
    with route_channels(bot, channels):
        report = make_interaction(bot, make_member(42), channel)
        await flags.flaglookalike.callback(
            flags, report, lora="style-05", artwork=harness.style_image("style-05")
        )
        told = report.followup.send.await_args.kwargs
        assert told["files"] == []
        assert "marked NSFW" in told["embed"].description
        sent = review_channel.send.await_args.kwargs
        assert SHEET_NAME not in [f.filename for f in sent["files"]]
        assert "marked NSFW" in {f.name: f.value for f in sent["embed"].fields}["Evidence"]

        review_channel.is_nsfw.return_value = True  # an age-restricted review channel shows them
        other = make_interaction(bot, make_member(43), channel)
        await flags.flaglookalike.callback(
            flags, other, lora="style-05", artwork=harness.style_image("style-05")
        )
        sent = review_channel.send.await_args.kwargs
        assert SHEET_NAME in [f.filename for f in sent["files"]]
        assert "marked NSFW" not in {f.name: f.value for f in sent["embed"].fields}["Evidence"]


async def test_flag_of_a_bad_attachment_is_refused_without_a_card(
    harness: Harness, channel: Any, review_channel: Any, channels: dict[int, Any]
) -> None:
    bot = await harness.bot()
    flags = bot.get_cog("Flags")
    with route_channels(bot, channels):
        report = make_interaction(bot, make_member(42), channel)
        art = harness.upload("art.txt", b"text", "text/plain")
        await flags.flaglookalike.callback(flags, report, lora="style-03", artwork=art)
    assert str(report.followup.send.await_args.args[0]).startswith("I can't use that image")
    assert messages_in(review_channel) == []


def test_friendly_error_never_shows_internals() -> None:
    assert "Traceback" not in friendly_error(RuntimeError("Traceback"))


async def test_findlora_stats_for_moderators_only(harness: Harness, channel: Any) -> None:
    bot = await harness.bot()
    cog = bot.get_cog("Stats")
    stranger = make_interaction(bot, make_member(1), channel)
    await cog.findlora_stats.callback(cog, stranger)
    stranger.response.send_message.assert_awaited_once_with(NOT_A_MODERATOR, ephemeral=True)

    mod = make_interaction(bot, moderator(), channel)
    await cog.findlora_stats.callback(cog, mod)
    mod.followup.send.assert_awaited_once_with(
        "No votes yet: 👍/👎 on results is what this report is made of.", ephemeral=True
    )

    async with harness.served.client(Role.SEARCH) as client:
        query = QueryImage(harness.served.reference_bytes("style-02"))
        search = await client.search([query], top_k=5)
        await client.record_feedback(search.search_id, search.matches[0].lora_id, up=True, user="u1")
        await client.record_feedback(search.search_id, search.matches[1].lora_id, up=False, user="u1")
    mod = make_interaction(bot, moderator(), channel)
    await cog.findlora_stats.callback(cog, mod, since="2000-01-01")
    text = mod.followup.send.await_args.args[0]
    assert "User-judged precision from 2 votes" in text
    assert "all                 1   1.00  0.50  0.50" in text
    assert "paper (human)" in text

    bad = make_interaction(bot, moderator(), channel)
    await cog.findlora_stats.callback(cog, bad, since="last tuesday")
    assert "must be a date" in bad.response.send_message.await_args.args[0]


async def test_a_review_card_too_large_with_the_artworks_is_posted_without_them(
    harness: Harness, review_channel: Any, channels: dict[int, Any]
) -> None:
    """Three large artworks can pass the per-file check and still be over the server's upload
    limit together: the card then went nowhere, and the Discord bot has no flag list to find it."""
    bot = await harness.bot()
    flags = bot.get_cog("Flags")
    sent = review_channel.send.side_effect
    too_large = discord.HTTPException(mock.Mock(status=413, reason="Payload Too Large"), {"code": 40005})

    async def refuse_large(content: str | None = None, **kwargs: Any) -> Any:
        if kwargs.get("files"):
            raise too_large
        return await sent(content, **kwargs)

    review_channel.send.side_effect = refuse_large
    flag = pb.Flag(flag_id=str(uuid.uuid4()), slug="style-03", reporter="discord:42")
    artworks = [QueryImage(b"\x89PNG" + b"0" * 64, "a.png", "image/png") for _ in range(3)]
    with route_channels(bot, channels):
        assert await flags.post_review_card(flag, artworks)
    assert review_channel.send.await_count == 2
    assert review_channel.send.await_args.kwargs["files"] == []
    assert messages_in(review_channel)[-1].embeds  # the card itself went out


async def test_flag_contact_sheets_are_drawn_off_the_event_loop(
    harness: Harness, channel: Any, review_channel: Any, channels: dict[int, Any]
) -> None:
    """The artist's reply and the review card drew their contact sheets on the event loop (the
    bot stopped answering interactions and heartbeats meanwhile)."""
    import threading

    from bot.discord.exts.flags import _cog as flags_cog
    from tests.helpers.threads import ThreadSpy

    bot = await harness.bot()
    flags = bot.get_cog("Flags")
    spy = ThreadSpy(flags_cog.contact_sheet)
    with route_channels(bot, channels), mock.patch.object(flags_cog, "contact_sheet", spy):
        report = make_interaction(bot, make_member(42), channel)
        await flags.flaglookalike.callback(
            flags, report, lora="style-04", artwork=harness.style_image("style-04")
        )
        assert SHEET_NAME in [f.filename for f in review_channel.send.await_args.kwargs["files"]]
    assert len(spy.threads) == 2  # the review card's, the artist's
    assert spy.ran_off(threading.get_ident())
