"""/findlora end to end: fake Discord edge, real bot, real gRPC service and database."""

from __future__ import annotations

import uuid
from typing import Any
from unittest import mock

import discord
import pytest
import structlog

from bot.core.paging import PageRef, parse_footer
from bot.core.replies import EXPIRED, NO_IMAGE, NOTHING_MATCHES, SERVICE_DOWN
from db import searches
from db.database import Database
from inference_service.config import Settings
from protos import findlora_pb2 as pb
from tests.bot.discord.conftest import BOT_ID, Harness, reaction, route_channels
from tests.helpers.discord_fakes import (
    custom_ids,
    make_channel,
    make_interaction,
    make_member,
    make_message,
    messages_in,
    press,
)
from tests.helpers.voters import pseudonym

pytestmark = pytest.mark.db


def titles(embeds: list[discord.Embed]) -> list[str]:
    return [str(e.title) for e in embeds]


def ranks(embeds: list[discord.Embed]) -> list[int]:
    return [int(str(e.title).split()[0].lstrip("#")) for e in embeds]


async def search(harness: Harness, bot: Any, channel: Any, user_id: int = 1, **options: Any) -> Any:
    interaction = make_interaction(bot, make_member(user_id), channel)
    cog = bot.get_cog("Search")
    image = options.pop("image", None) or harness.style_image("style-03")
    await cog.findlora.callback(cog, interaction, image=image, **options)
    return interaction


def sent_page(interaction: Any) -> dict[str, Any]:
    return dict(interaction.followup.send.await_args.kwargs)


async def test_findlora_defers_then_answers_with_one_embed_per_result(harness: Harness, channel: Any) -> None:
    bot = await harness.bot()
    with structlog.testing.capture_logs() as logged:
        interaction = await search(harness, bot, channel, prompt="a castle")
    # The user is never logged beside the search id: with the feedback key, that names voters.
    done = [e for e in logged if e["event"] == "search_done"]
    assert done == [{"event": "search_done", "log_level": "info", "user": "discord:1", "results": 5}]

    interaction.response.defer.assert_awaited_once_with(thinking=True, ephemeral=False)
    sent = sent_page(interaction)
    embeds = sent["embeds"]
    assert ranks(embeds) == [1, 2, 3, 4, 5]
    assert titles(embeds)[0] == "#1 Style 3"
    first = embeds[0]
    assert first.url == "https://example.org/style-03"
    fields = {f.name: f.value for f in first.fields}
    assert fields["Base model"] == "sd1"
    assert fields["Suggested prompt"] == "```\na castle, trig3, <lora:style-03:0.8>\n```"
    assert "style distance" in str(fields["Score"])
    assert "`a castle`" in sent["content"]
    # One transfer sheet per result, shown inside its embed.
    assert [f.filename for f in sent["files"]] == [f"result-{n}.webp" for n in range(1, 6)]
    assert first.image.url == "attachment://result-1.webp"
    ref = parse_footer(first.footer.text)
    assert ref is not None
    assert (ref.offset, ref.limit) == (0, 5)
    assert "of 11" in str(first.footer.text)  # 12 LoRAs, one NSFW hidden in this channel
    message = messages_in(channel)[0]
    assert [c.args[0] for c in message.add_reaction.await_args_list] == ["⬅️", "➡️", "👍", "👎"]


async def test_paging_both_ways_by_reaction(harness: Harness, channel: Any) -> None:
    bot = await harness.bot()
    await search(harness, bot, channel)
    message = messages_in(channel)[0]
    cog = bot.get_cog("Search")

    with route_channels(bot, {channel.id: channel}):
        payload = reaction("➡️", user_id=2, channel_id=channel.id, message_id=message.id)
        await cog.on_raw_reaction_add(payload)
        assert ranks(message.embeds) == [6, 7, 8, 9, 10]
        message.remove_reaction.assert_awaited_once()

        await cog.on_raw_reaction_add(payload)
        assert ranks(message.embeds) == [11]
        await cog.on_raw_reaction_add(payload)  # past the end: nothing changes
        assert ranks(message.embeds) == [11]

        back = reaction("⬅️", user_id=2, channel_id=channel.id, message_id=message.id)
        await cog.on_raw_reaction_add(back)
        await cog.on_raw_reaction_add(back)
        assert ranks(message.embeds) == [1, 2, 3, 4, 5]

        # The bot's own reactions and other people's messages are ignored.
        own = reaction("➡️", user_id=BOT_ID, channel_id=channel.id, message_id=message.id)
        await cog.on_raw_reaction_add(own)
        assert ranks(message.embeds) == [1, 2, 3, 4, 5]
        # A reaction on someone else's message is dropped before any fetch from Discord.
        fetches = channel.fetch_message.await_count
        elsewhere = reaction("👍", user_id=2, channel_id=channel.id, message_id=message.id, author_id=7)
        await cog.on_raw_reaction_add(elsewhere)
        assert channel.fetch_message.await_count == fetches
        mine = reaction("➡️", user_id=2, channel_id=channel.id, message_id=message.id, author_id=BOT_ID)
        await cog.on_raw_reaction_add(mine)
        assert ranks(message.embeds) == [6, 7, 8, 9, 10]


async def test_a_page_whose_results_were_all_removed_keeps_reaction_paging(
    harness: Harness, channel: Any
) -> None:
    """Moderators hid every LoRA of the next window after the search: that page used to come out
    empty, without the footer reaction paging reads its search from, and ➡️ did nothing after."""
    bot = await harness.bot()
    await search(harness, bot, channel)
    message = messages_in(channel)[0]
    ref = parse_footer(message.embeds[0].footer.text)
    assert ref is not None
    client = bot.services.client
    window = await client.get_page(ref.search_id, 5, 5)
    for match in window.matches:
        await client.set_lora_status(match.slug, pb.LORA_STATUS_HIDDEN, moderator="mod")

    cog = bot.get_cog("Search")
    with route_channels(bot, {channel.id: channel}):
        forward = reaction("➡️", user_id=2, channel_id=channel.id, message_id=message.id)
        await cog.on_raw_reaction_add(forward)
        assert len(message.embeds) == 1
        assert "removed by moderators" in str(message.embeds[0].description)
        moved = parse_footer(message.embeds[0].footer.text)
        assert moved is not None
        assert moved.offset == 5
        await cog.on_raw_reaction_add(forward)
        assert ranks(message.embeds) == [11]


async def test_paging_by_button_survives_a_bot_restart(harness: Harness, channel: Any) -> None:
    first_bot = await harness.bot()
    interaction = await search(harness, first_bot, channel)
    view = sent_page(interaction)["view"]
    next_id = next(i for i in custom_ids(view) if i.startswith("fl:next:"))
    await first_bot.close()

    restarted = await harness.bot()  # nothing carried over but the message's own components
    press_next = make_interaction(restarted, make_member(2), channel)
    await press(press_next, next_id)
    press_next.response.defer.assert_awaited_once()
    page = press_next.edit_original_response.await_args.kwargs
    assert ranks(page["embeds"]) == [6, 7, 8, 9, 10]

    prev_id = next(i for i in custom_ids(page["view"]) if i.startswith("fl:prev:"))
    press_prev = make_interaction(restarted, make_member(2), channel)
    await press(press_prev, prev_id)
    assert ranks(press_prev.edit_original_response.await_args.kwargs["embeds"]) == [1, 2, 3, 4, 5]


async def test_votes_from_menu_and_reaction_are_deduplicated(
    harness: Harness, channel: Any, db: Database, settings: Settings
) -> None:
    bot = await harness.bot()
    interaction = await search(harness, bot, channel)
    embeds = sent_page(interaction)["embeds"]
    ref = parse_footer(embeds[0].footer.text)
    assert ref is not None
    rate_id = next(i for i in custom_ids(sent_page(interaction)["view"]) if i.startswith("fl:rate:"))
    top_lora = int(str(embeds[0].footer.text).rsplit("lora ", 1)[1])

    async def choose(value: str) -> str:
        pick = make_interaction(bot, make_member(1), channel, data={"custom_id": rate_id, "values": [value]})
        await press(pick, rate_id)
        return str(pick.followup.send.await_args.args[0])

    assert await choose(f"{top_lora}:up") == "Thanks, your 👍 is recorded."
    assert await choose(f"{top_lora}:down") == "Your vote is now 👎."

    message = messages_in(channel)[0]
    with route_channels(bot, {channel.id: channel}):
        cog = bot.get_cog("Search")
        await cog.on_raw_reaction_add(reaction("👍", user_id=2, channel_id=channel.id, message_id=message.id))

    votes = await db.run(searches.votes, uuid.UUID(ref.search_id))
    expected = [
        (top_lora, pseudonym(settings, ref.search_id, "discord:1"), -1),
        (top_lora, pseudonym(settings, ref.search_id, "discord:2"), 1),
    ]
    assert sorted(votes) == sorted(expected)  # one vote each, stored under pseudonyms


async def test_expired_search_says_run_it_again(harness: Harness, channel: Any, db: Database) -> None:
    bot = await harness.bot()
    interaction = await search(harness, bot, channel)
    next_id = next(i for i in custom_ids(sent_page(interaction)["view"]) if i.startswith("fl:next:"))
    async with db.pool.connection() as conn:
        await conn.execute("UPDATE searches SET expires_at = now() - interval '1 minute'")

    pressed = make_interaction(bot, make_member(2), channel)
    await press(pressed, next_id)
    pressed.followup.send.assert_awaited_once_with(EXPIRED, ephemeral=True)
    pressed.edit_original_response.assert_not_awaited()


async def test_nsfw_lora_only_in_age_restricted_channels(harness: Harness) -> None:
    bot = await harness.bot()
    normal = make_channel(101, bot_id=BOT_ID, nsfw=False)
    restricted = make_channel(102, bot_id=BOT_ID, nsfw=True)

    normal_titles = titles(
        sent_page(await search(harness, bot, normal, image=harness.style_image("style-05")))["embeds"]
    )
    restricted_titles = titles(
        sent_page(await search(harness, bot, restricted, image=harness.style_image("style-05")))["embeds"]
    )
    assert all("Style 5" not in t for t in normal_titles)
    assert restricted_titles[0] == "#1 Style 5"


async def test_private_search_is_ephemeral_without_reactions(harness: Harness, channel: Any) -> None:
    bot = await harness.bot()
    interaction = await search(harness, bot, channel, private=True)
    interaction.response.defer.assert_awaited_once_with(thinking=True, ephemeral=True)
    assert sent_page(interaction)["ephemeral"] is True
    message = messages_in(channel)[0]
    message.add_reaction.assert_not_awaited()


async def test_a_file_declared_not_an_image_is_refused_privately_before_the_defer(
    harness: Harness, channel: Any
) -> None:
    """What Discord declares (type, size) is checked before deferring: a refusal after a public
    defer took the "thinking…" message's place and was shown to the whole channel."""
    bot = await harness.bot()
    with mock.patch.object(bot.services.client, "search", wraps=bot.services.client.search) as spy:
        notes = await search(harness, bot, channel, image=harness.upload("notes.txt", b"hello", "text/plain"))
        too_big = harness.upload("huge.png", b"\x89PNG")
        too_big.size = bot.services.limits.max_bytes + 1
        huge = await search(harness, bot, channel, image=too_big)
    for interaction, expected in ((notes, "notes.txt is not a PNG"), (huge, "huge.png is ")):
        interaction.response.defer.assert_not_awaited()
        text = interaction.response.send_message.await_args.args[0]
        assert text.startswith(f"I can't use that image: {expected}")
        assert interaction.response.send_message.await_args.kwargs == {"ephemeral": True}
    spy.assert_not_awaited()


async def test_an_error_after_a_public_defer_is_said_privately(harness: Harness, channel: Any) -> None:
    """The first follow-up of a public defer is public whatever its ephemeral flag: the public
    "thinking…" message is deleted first, so the refusal is a message of the user's alone."""
    bot = await harness.bot()
    broken = harness.upload("broken.png", b"\x89PNG\r\n\x1a\nnope", "image/png")
    interaction = await search(harness, bot, channel, image=broken)
    interaction.response.defer.assert_awaited_once_with(thinking=True, ephemeral=False)
    interaction.delete_original_response.assert_awaited_once()
    text = str(interaction.followup.send.await_args.args[0])
    assert text.startswith("I can't use that image: broken.png is not a readable")
    assert interaction.followup.send.await_args.kwargs == {"ephemeral": True}
    assert "Traceback" not in text

    private = await search(harness, bot, channel, image=broken, private=True)
    private.delete_original_response.assert_not_awaited()  # its "thinking…" is the user's alone
    assert private.followup.send.await_args.kwargs == {"ephemeral": True}


async def test_nothing_matches(harness: Harness, channel: Any) -> None:
    bot = await harness.bot()
    interaction = await search(harness, bot, channel, base_model="flux")
    interaction.followup.send.assert_awaited_once_with(NOTHING_MATCHES, ephemeral=True)
    interaction.delete_original_response.assert_awaited_once()


async def test_service_down_is_a_friendly_message(harness: Harness, channel: Any) -> None:
    bot = await harness.bot(service="127.0.0.1:1", search_timeout_s=5.0)
    interaction = await search(harness, bot, channel)
    interaction.followup.send.assert_awaited_once_with(SERVICE_DOWN, ephemeral=True)
    interaction.delete_original_response.assert_awaited_once()


async def test_rate_limit_answers_with_a_cooldown(harness: Harness, channel: Any) -> None:
    bot = await harness.bot(searches_per_minute=1)
    await search(harness, bot, channel)
    second = await search(harness, bot, channel)
    second.response.defer.assert_not_awaited()
    text = second.response.send_message.await_args.args[0]
    assert text.startswith("You're searching too quickly; try again in")
    assert second.response.send_message.await_args.kwargs == {"ephemeral": True}


async def test_context_menu_searches_the_message_images(harness: Harness, channel: Any) -> None:
    bot = await harness.bot()
    cog = bot.get_cog("Search")
    with_image = make_message(1, attachments_in=[harness.style_image("style-07")])
    interaction = make_interaction(bot, make_member(3), channel)
    await cog.context_menu.callback(interaction, with_image)
    sent = sent_page(interaction)
    assert sent["ephemeral"] is True
    assert titles(sent["embeds"])[0] == "#1 Style 7"

    without_image = make_message(1, attachments_in=[])
    asked = make_interaction(bot, make_member(3), channel)
    await cog.context_menu.callback(asked, without_image)
    asked.response.send_message.assert_awaited_once_with(NO_IMAGE, ephemeral=True)


async def test_context_menu_searches_a_forwarded_messages_images(harness: Harness, channel: Any) -> None:
    """A forwarded message carries its images in its snapshot, not its own attachments: the
    context menu answered "attach an image" to them."""
    bot = await harness.bot()
    cog = bot.get_cog("Search")
    forwarded = make_message(1, attachments_in=[])
    snapshot = mock.MagicMock(spec_set=discord.MessageSnapshot)
    snapshot.attachments = [harness.style_image("style-07")]
    forwarded.message_snapshots = [snapshot]
    interaction = make_interaction(bot, make_member(3), channel)
    await cog.context_menu.callback(interaction, forwarded)
    interaction.response.send_message.assert_not_awaited()
    assert titles(sent_page(interaction)["embeds"])[0] == "#1 Style 7"


def test_page_ref_from_footer_is_the_ref_the_service_pages() -> None:
    ref = PageRef(str(uuid.uuid4()), 5, 5)
    assert parse_footer(f"findlora · results 6–10 of 11 · ref {ref.encode()} · lora 3") == ref


async def test_extra_attachments_make_one_multi_image_query(harness: Harness, channel: Any) -> None:
    bot = await harness.bot()
    extra = harness.upload("second.png", harness.served.reference_bytes("style-03", "s01"))
    with mock.patch.object(bot.services.client, "search", wraps=bot.services.client.search) as spy:
        interaction = await search(harness, bot, channel, image2=extra)
    sent_images = spy.await_args.args[0]
    assert [image.filename for image in sent_images] == ["style-03.png", "second.png"]
    assert titles(sent_page(interaction)["embeds"])[0] == "#1 Style 3"


async def test_paging_by_reaction_in_a_direct_message(harness: Harness) -> None:
    """A DM channel is not in the bot's cache (get_channel: None), and ➡️ there did nothing."""
    bot = await harness.bot()
    dm = make_channel(555, bot_id=BOT_ID)  # what the partial messageable fetches from and edits
    await search(harness, bot, dm)
    message = messages_in(dm)[0]
    cog = bot.get_cog("Search")
    partial = mock.Mock(side_effect=lambda channel_id, **_: dm if channel_id == dm.id else None)
    with route_channels(bot, {}), mock.patch.object(bot, "get_partial_messageable", partial):
        forward = reaction("➡️", user_id=2, channel_id=dm.id, message_id=message.id, in_dm=True)
        await cog.on_raw_reaction_add(forward)
    assert ranks(message.embeds) == [6, 7, 8, 9, 10]


async def test_other_bots_reactions_neither_page_nor_vote(
    harness: Harness, channel: Any, db: Database
) -> None:
    bot = await harness.bot()
    await search(harness, bot, channel)
    message = messages_in(channel)[0]
    ref = parse_footer(message.embeds[0].footer.text)
    assert ref is not None
    cog = bot.get_cog("Search")
    with route_channels(bot, {channel.id: channel}):
        for emoji in ("➡️", "👍"):
            await cog.on_raw_reaction_add(
                reaction(emoji, user_id=60, channel_id=channel.id, message_id=message.id, bot=True)
            )
    assert ranks(message.embeds) == [1, 2, 3, 4, 5]
    message.remove_reaction.assert_not_awaited()
    assert await db.run(searches.votes, uuid.UUID(ref.search_id)) == []
