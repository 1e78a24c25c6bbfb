from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.slack.blocks import ACTION_APPROVE, ACTION_DISMISS, ACTION_MORE
from bot.slack.listeners.actions.more import more
from bot.slack.listeners.actions.review import review_flag


def register(app: AsyncApp) -> None:
    app.action(ACTION_MORE)(more)
    app.action(ACTION_APPROVE)(review_flag)
    app.action(ACTION_DISMISS)(review_flag)
