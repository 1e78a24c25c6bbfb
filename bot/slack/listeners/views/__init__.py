from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.slack.blocks import FLAG_VIEW, REGISTER_VIEW
from bot.slack.listeners.views.submitted import flag_submitted, register_submitted


def register(app: AsyncApp) -> None:
    app.view(REGISTER_VIEW)(register_submitted)
    app.view(FLAG_VIEW)(flag_submitted)
