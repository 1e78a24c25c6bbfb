from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.slack.blocks import FLAG_VIEW, REGISTER_VIEW
from bot.slack.listeners.views.flag_submitted import flag_submitted
from bot.slack.listeners.views.register_submitted import register_submitted


def register(app: AsyncApp) -> None:
    app.view(REGISTER_VIEW)(register_submitted)
    app.view(FLAG_VIEW)(flag_submitted)
