"""Every extension loads, registers its commands, and pulls in neither torch nor a database driver."""

from __future__ import annotations

import subprocess
import sys
from unittest import mock

import discord

from bot.discord.bot import BotServices, FindLoraBot, walk_extensions
from bot.discord.config import DiscordSettings

EXPECTED_EXTENSIONS = [
    "bot.discord.exts.flags",
    "bot.discord.exts.moderation",
    "bot.discord.exts.search",
    "bot.discord.exts.stats",
]


async def test_every_extension_loads() -> None:
    assert walk_extensions() == EXPECTED_EXTENSIONS
    services = BotServices.create(DiscordSettings(), mock.MagicMock(), mock.MagicMock())
    bot = FindLoraBot(services)
    await bot.load_extensions()
    assert sorted(bot.extensions) == EXPECTED_EXTENSIONS
    assert sorted(bot.cogs) == ["Flags", "Moderation", "Search", "Stats"]
    slash = sorted(c.name for c in bot.tree.get_commands(type=discord.AppCommandType.chat_input))
    assert slash == ["findlora", "findlora-stats", "flaglookalike", "lora", "registerlora", "registerloras"]
    menus = [c.name for c in bot.tree.get_commands(type=discord.AppCommandType.message)]
    assert menus == ["Find LoRA for this image"]
    lora_group = bot.tree.get_command("lora")
    assert isinstance(lora_group, discord.app_commands.Group)
    assert sorted(c.name for c in lora_group.commands) == ["hide", "restore", "takedown"]
    for name in EXPECTED_EXTENSIONS:
        await bot.unload_extension(name)
    assert bot.tree.get_commands(type=discord.AppCommandType.message) == []


def test_the_bot_imports_no_torch_and_no_database_driver() -> None:
    code = (
        "import sys, bot.discord.run, bot.discord.exts.search._cog, bot.discord.exts.flags._cog,"
        " bot.discord.exts.moderation._cog, bot.discord.exts.stats._cog; "
        "banned = ('torch', 'psycopg', 'numpy', 'inference_service', 'db'); "
        "print(sorted(m for m in banned if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
