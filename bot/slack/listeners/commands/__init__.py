from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.slack.listeners.commands.flaglookalike import flaglookalike
from bot.slack.listeners.commands.registerlora import registerlora


def register(app: AsyncApp) -> None:
    app.command("/registerlora")(registerlora)
    app.command("/flaglookalike")(flaglookalike)
