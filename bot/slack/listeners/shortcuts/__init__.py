from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.slack.listeners.shortcuts.find_lora import FIND_LORA, find_lora


def register(app: AsyncApp) -> None:
    app.shortcut(FIND_LORA)(find_lora)
