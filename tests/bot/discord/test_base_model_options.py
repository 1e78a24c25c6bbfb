"""The base-model options of /findlora and /registerlora: autocomplete over the vocabulary, through
discord.py's own autocomplete dispatch on the loaded cogs."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from discord import app_commands

from tests.bot.discord.conftest import Harness
from tests.helpers.discord_fakes import make_interaction, make_member

pytestmark = pytest.mark.db


async def choices(
    bot: Any, command: app_commands.Command[Any, ..., Any], typed: str
) -> list[tuple[str, str]]:
    interaction = make_interaction(bot, make_member(1), mock.MagicMock(id=10))
    interaction.response.autocomplete = mock.AsyncMock()
    namespace = app_commands.Namespace(interaction, {}, [])
    namespace.__dict__["base_model"] = typed
    await command._invoke_autocomplete(interaction, "base_model", namespace)
    offered = interaction.response.autocomplete.await_args.args[0]
    return [(choice.name, str(choice.value)) for choice in offered]


async def test_autocomplete_offers_canonical_families_for_a_typed_prefix(harness: Harness) -> None:
    bot = await harness.bot()
    search = bot.get_cog("Search").findlora
    register = bot.get_cog("Moderation").registerlora
    assert search.get_parameter("base_model").autocomplete
    assert register.get_parameter("base_model").autocomplete

    assert await choices(bot, search, "flux.1 d") == [("Flux.1 Dev (flux1-dev)", "flux1-dev")]
    assert (await choices(bot, search, "SD 1.5"))[0] == ("Stable Diffusion 1.x (sd1)", "sd1")
    assert [value for _, value in await choices(bot, register, "pony")] == ["pony"]
    assert [value for _, value in await choices(bot, register, "illus")] == ["illustrious"]
    everything = await choices(bot, search, "")
    assert 10 <= len(everything) <= 25  # Discord shows at most 25 choices
    assert all(len(name) <= 100 for name, _ in everything)
    assert await choices(bot, search, "no such model") == []
