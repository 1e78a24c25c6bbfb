"""/registerloras: a moderator attaches a list; the bot reads it (text only, capped), sends every
entry to the real service and ends with the summary, line by line."""

from __future__ import annotations

from typing import Any

import pytest

from bot.core.attachments import MAX_LIST_BYTES
from bot.core.permissions import NOT_A_MODERATOR
from tests.bot.discord.conftest import MOD_ROLE, MODERATOR_ID, Harness
from tests.helpers.discord_fakes import make_interaction, make_member

pytestmark = pytest.mark.db
LIST = (
    "# contest entries\n"
    "https://example.org/x/ink.safetensors\n"  # outside the service's download allowlist
    "loras/local.safetensors\n"
    "ftp://example.org/y.safetensors\n"
)


def shown(interaction: Any) -> list[str]:
    return [call.kwargs["content"] for call in interaction.edit_original_response.await_args_list]


async def test_registerloras_is_for_moderators_and_reports_every_bad_line(
    harness: Harness, channel: Any
) -> None:
    bot = await harness.bot()
    cog = bot.get_cog("Moderation")
    file = harness.upload("loras.txt", LIST.encode(), "text/plain; charset=utf-8")

    stranger = make_interaction(bot, make_member(1), channel)
    await cog.registerloras.callback(cog, stranger, file=file)
    stranger.response.send_message.assert_awaited_once_with(NOT_A_MODERATOR, ephemeral=True)

    mod = make_interaction(bot, make_member(MODERATOR_ID, role_ids=(MOD_ROLE,)), channel)
    await cog.registerloras.callback(cog, mod, file=file)
    final = shown(mod)[-1]
    assert final.splitlines() == [
        "❌ 0 registered, 0 skipped (0 already there, 0 already queued), 3 failed.",
        "• line 2: downloads from example.org are not allowed (allowed: "
        + final.splitlines()[1].split("(allowed: ")[1],
        "• line 3: a local file cannot be registered from chat; give its https download link"
        " (loras/local.safetensors)",
        "• line 4: only https:// download links are accepted, not ftp:// (ftp://example.org/y.safetensors)",
    ]


async def test_registerloras_refuses_what_is_not_a_small_text_list(harness: Harness, channel: Any) -> None:
    bot = await harness.bot()
    cog = bot.get_cog("Moderation")
    cases = [
        (harness.upload("style.png", b"\x89PNG\r\n", "image/png"), "style.png is not a list"),
        (harness.upload("list.txt", b"\xff\xfe\x00binary", "text/plain"), "list.txt is not UTF-8 text"),
        (harness.upload("big.txt", b"x" * (MAX_LIST_BYTES + 1), "text/plain"), "big.txt is 0.3 MB"),
        (harness.upload("empty.txt", b"# nothing yet\n", "text/plain"), "The file lists no LoRAs"),
    ]
    for file, expected in cases:
        mod = make_interaction(bot, make_member(MODERATOR_ID, role_ids=(MOD_ROLE,)), channel)
        await cog.registerloras.callback(cog, mod, file=file)
        assert shown(mod)[-1].startswith(expected), shown(mod)
