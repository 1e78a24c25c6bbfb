from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.slack.listeners.events.app_mention import app_mention
from bot.slack.listeners.events.direct_message import direct_message
from bot.slack.listeners.events.reaction_added import reaction_added


def register(app: AsyncApp) -> None:
    app.event("app_mention")(app_mention)
    app.event("reaction_added")(reaction_added)
    app.event("message")(direct_message)
