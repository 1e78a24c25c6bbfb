"""The message shortcut and /registerlora work in any conversation, also a DM between two people or a
channel nobody invited the app to, where Slack refuses the app's own posts: the person hears back
through the request's response_url."""

from __future__ import annotations

import pytest

from bot.core.permissions import NOT_A_MODERATOR
from bot.core.replies import NO_IMAGE
from bot.slack.listeners.shortcuts.find_lora import FIND_LORA
from bot.slack.messages import NOT_HERE
from tests.bot.slack.conftest import USER, SlackHarness
from tests.helpers.slack_fakes import message_shortcut

pytestmark = pytest.mark.db
OUTSIDE = "C0OUTSIDE"  # a channel the app is not in
PAIR_DM = "D0PAIR"  # a DM between two people


def ephemeral(text: str) -> dict[str, str]:
    return {"text": text, "response_type": "ephemeral"}


async def test_find_lora_where_the_app_is_not_a_member_answers_through_respond(
    harness: SlackHarness,
) -> None:
    harness.api.channel_errors.update({OUTSIDE: "not_in_channel", PAIR_DM: "channel_not_found"})
    sender, services = harness.start()
    with_image = harness.api.post_as_user(OUTSIDE, "U0BOB", "look", files=[harness.style_file("style-07")])
    await sender.interactive(message_shortcut(FIND_LORA, USER, OUTSIDE, with_image, harness.api.response_url))
    await services.work.drain()
    # The search ran; its results could not be posted there, so the person is told what to do.
    assert harness.api.called("chat.postMessage", channel=OUTSIDE)
    assert harness.api.responses == [ephemeral(NOT_HERE)]

    without_image = harness.api.post_as_user(PAIR_DM, "U0BOB", "what made this?")
    await sender.interactive(
        message_shortcut(FIND_LORA, USER, PAIR_DM, without_image, harness.api.response_url)
    )
    await services.work.drain()
    assert harness.api.responses[1:] == [ephemeral(NO_IMAGE)]
    assert harness.api.called("chat.postEphemeral") == []


async def test_registerlora_refusal_reaches_people_where_the_app_is_not(harness: SlackHarness) -> None:
    harness.api.channel_errors[OUTSIDE] = "not_in_channel"
    sender, services = harness.start()
    await sender.command("/registerlora", USER, OUTSIDE)
    await services.work.drain()
    assert harness.api.responses == [ephemeral(NOT_A_MODERATOR)]
    assert harness.api.called("views.open") == []
