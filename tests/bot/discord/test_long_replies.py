"""Replies that must reach the person whatever they typed or however long the job ran: Discord
refuses a message over 2000 characters (HTTP 400), and a channel may refuse the bot altogether."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any
from unittest import mock

import discord
import pytest

from bot.discord._progress import ProgressMessage
from tests.bot.discord.conftest import MOD_ROLE, MODERATOR_ID, Harness
from tests.helpers.discord_fakes import make_interaction, make_member, messages_in
from tests.helpers.jobs import JobDriver, in_background
from tests.helpers.waits import eventually

pytestmark = pytest.mark.db
DISCORD_MAX_CHARS = 2000


def moderator() -> Any:
    return make_member(MODERATOR_ID, role_ids=(MOD_ROLE,))


def forbidden() -> discord.Forbidden:
    return discord.Forbidden(mock.Mock(status=403, reason="Forbidden"), "Missing Access")


def stale(interaction: Any) -> Any:
    """Past the 15 minutes an interaction's token lives: its reply can no longer be edited."""
    interaction.created_at = discord.utils.utcnow() - timedelta(minutes=20)
    return interaction


async def test_a_long_list_summary_still_fits_one_message(harness: Harness, channel: Any) -> None:
    """Every entry failing with a long base-model name (a warning each): the summary went past
    2000 characters, Discord refused it, and the moderator never saw how the list went."""
    bot = await harness.bot()
    cog = bot.get_cog("Moderation")
    entry = '[[lora]]\nurl = "https://example.org/{i}.safetensors"\nbase_model = "{model}"\nnsfw = "x"\n\n'
    text = "".join(entry.format(i=i, model=f"model {i} " + "m" * 900) for i in range(40))
    file = harness.upload("many.toml", text.encode(), "text/plain")

    mod = make_interaction(bot, moderator(), channel)
    await cog.registerloras.callback(cog, mod, file=file)
    final = mod.edit_original_response.await_args.kwargs["content"]
    assert len(final) <= DISCORD_MAX_CHARS
    lines = final.splitlines()
    assert lines[0].startswith("❌ 0 registered, 0 skipped (0 already there, 0 already queued), 40 failed.")
    assert lines[1].startswith("• line 1: nsfw must be true or false")
    assert lines[-1].startswith("… and ")
    assert lines[-1].endswith(" more lines left out")
    shown = len(lines) - 2
    assert int(lines[-1].split()[2]) == 40 + 40 - shown  # the failures and warnings not shown


async def test_progress_over_the_limit_is_clipped_not_refused(channel: Any) -> None:
    client = mock.MagicMock(spec_set=discord.Client)
    client.user = make_member(1)
    long = "⚙️ " + "x" * 3000

    fresh = make_interaction(client, moderator(), channel)
    await ProgressMessage(fresh).show(long)
    assert len(fresh.edit_original_response.await_args.kwargs["content"]) <= DISCORD_MAX_CHARS

    closed = moderator()
    closed.send = mock.AsyncMock(side_effect=forbidden())  # DMs closed: the channel, with a mention
    await ProgressMessage(stale(make_interaction(client, closed, channel))).show(long)
    posted = messages_in(channel)[-1]
    assert posted.content.startswith(f"{closed.mention} ⚙️ xxx")
    assert len(posted.content) <= DISCORD_MAX_CHARS


async def test_progress_nobody_can_receive_ends_the_command_cleanly(
    harness: Harness, jobs: JobDriver
) -> None:
    """Past the token, DMs closed and no Send Messages in the channel: the Forbidden came out of
    the command; now it is logged, and later updates are not tried against the same refusals."""
    bot = await harness.bot()
    cog = bot.get_cog("Moderation")
    closed = moderator()
    closed.send = mock.AsyncMock(side_effect=forbidden())
    locked = mock.MagicMock(spec_set=discord.TextChannel)
    locked.id = 400
    locked.send = mock.AsyncMock(side_effect=forbidden())
    url = "https://huggingface.co/x/a/resolve/main/a.safetensors"

    old = stale(make_interaction(bot, closed, locked))
    async with in_background(cog.registerlora.callback(cog, old, url=url, name="A")) as following:
        job = await jobs.job_for(url)  # queued by the real service
        await eventually(lambda: locked.send.await_count, "the first update, tried everywhere")
        await jobs.succeed(job)  # the final state: shown (tried) always
        await asyncio.wait_for(following, 10)  # ended, and without an exception
    closed.send.assert_awaited_once()
    assert str(closed.send.await_args.args[0]).startswith("⏳ Registration queued")
    locked.send.assert_awaited_once()
    assert str(locked.send.await_args.args[0]).startswith(f"{closed.mention} ⏳ Registration queued")

    refused = stale(make_interaction(bot, closed, locked))  # the service's refusal, said nowhere
    await cog.registerlora.callback(cog, refused, url="https://example.org/b.safetensors", name="B")
    assert closed.send.await_count == 2
    assert str(closed.send.await_args.args[0]).startswith(
        "I can't do that: downloads from example.org are not allowed"
    )


async def test_a_long_lora_reference_is_said_back_short(harness: Harness, channel: Any) -> None:
    """The service's "no LoRA matches '<what was typed>'" with a 2,000-character link typed was
    over Discord's limit, and the moderator got no answer at all."""
    bot = await harness.bot()
    cog = bot.get_cog("Moderation")
    typed = "https://example.org/" + "y" * 2000
    mod = make_interaction(bot, moderator(), channel)
    await cog.hide.callback(cog, mod, lora=typed)
    text = str(mod.followup.send.await_args.args[0])
    assert text.startswith("No LoRA matches 'https://example.org/yyy")
    assert "…'" in text
    assert len(text) < 200


async def test_a_long_since_is_said_back_short(harness: Harness, channel: Any) -> None:
    bot = await harness.bot()
    cog = bot.get_cog("Stats")
    mod = make_interaction(bot, moderator(), channel)
    await cog.findlora_stats.callback(cog, mod, since="not a date " * 500)
    text = str(mod.response.send_message.await_args.args[0])
    assert text.startswith("`since` must be a date like 2026-11-01, not 'not a date not")
    assert "…'" in text
    assert len(text) < 200
