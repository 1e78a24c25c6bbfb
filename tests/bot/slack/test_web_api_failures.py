"""When Slack's Web API fails part way (a rate limit, a failed upload, an edit refused), no answer is
lost: a 429 is retried, a search stays pageable, the artist still hears back, and artwork for a
report is never mistaken for a search."""

from __future__ import annotations

import pytest

from bot.slack.blocks import ACTION_DISMISS, ACTION_MORE, has_more, ref_text
from bot.slack.flagging import CARD_NOT_UPDATED
from bot.slack.listeners.events.direct_message import THREAD_UNREADABLE
from bot.slack.search import PAGE_NOT_POSTED
from tests.bot.slack.conftest import ARTIST, CHANNEL, MODERATOR, REVIEW_CHANNEL, USER, SlackHarness
from tests.bot.slack.test_moderation_and_flags import dm, open_report, report, send_artwork
from tests.bot.slack.test_search import ephemeral_texts, results
from tests.helpers.slack_fakes import UPLOAD, button, mention

pytestmark = pytest.mark.db


async def test_a_rate_limited_answer_is_retried_after_retry_after(harness: SlackHarness) -> None:
    sender, services = harness.start()
    harness.api.fail_once("chat.postMessage", 429)
    await sender.event(mention(CHANNEL, USER, [harness.style_file("style-03")]))
    await services.work.drain()
    assert len(harness.api.called("chat.postMessage", channel=CHANNEL)) == 2  # refused, then retried
    assert len(results(harness.api, CHANNEL)) == 1
    assert ephemeral_texts(harness.api, USER) == []


async def test_more_still_pages_after_a_failed_post_or_a_failed_edit(harness: SlackHarness) -> None:
    sender, services = harness.start()
    thread = "1699999999.000300"
    await sender.event(mention(CHANNEL, USER, [harness.style_file("style-03")], ts=thread))
    await services.work.drain()
    [first] = results(harness.api, CHANNEL)
    more = button(ACTION_MORE, "", USER, CHANNEL, harness.api.message(CHANNEL, first["ts"]), thread)

    # The next page cannot be posted: the first keeps its button, the person is told.
    harness.api.fail_once("chat.postMessage", "ratelimited")
    await sender.interactive(more)
    await services.work.drain()
    assert len(results(harness.api, CHANNEL)) == 1
    assert has_more(harness.api.message(CHANNEL, first["ts"])["blocks"])
    assert ephemeral_texts(harness.api, USER) == [PAGE_NOT_POSTED]

    # Pressed again, the page is posted; the button cannot be taken off, yet the page stays single.
    harness.api.fail_once("chat.update", "ratelimited")
    await sender.interactive(more)
    await sender.interactive(more)
    await services.work.drain()
    [_, second] = results(harness.api, CHANNEL)
    assert "results 6–10 of 11" in ref_text(second["blocks"])

    # The new page pages on by itself.
    more = button(ACTION_MORE, "", USER, CHANNEL, harness.api.message(CHANNEL, second["ts"]), thread)
    await sender.interactive(more)
    await services.work.drain()
    assert "results 11–11 of 11" in ref_text(results(harness.api, CHANNEL)[2]["blocks"])


async def test_a_failed_artwork_upload_still_tells_the_artist(harness: SlackHarness) -> None:
    sender, services = harness.start()
    harness.api.fail_once(UPLOAD, 500)  # the artwork for the review card's thread
    thread = await report(harness, sender, services, "style-03", "style-03")
    [card] = harness.api.posted(REVIEW_CHANNEL)
    replies = [m["text"] for m in harness.api.posted(dm(ARTIST)) if m.get("thread_ts") == thread]
    assert "The moderators will review it; I'll message you with the outcome." in replies[0]
    # Only the card's pictures were lost: the artist's own thread got its transfers.
    [uploaded] = harness.api.called("files.completeUploadExternal")
    assert uploaded["channel_id"] == dm(ARTIST)
    assert "Lookalike report:* Style 3" in card["blocks"][0]["text"]["text"]


async def test_the_artist_hears_back_when_the_card_cannot_be_updated(harness: SlackHarness) -> None:
    sender, services = harness.start()
    await report(harness, sender, services, "style-04", "style-04")
    [card] = harness.api.posted(REVIEW_CHANNEL)
    flag_id = card["blocks"][-1]["elements"][1]["value"]
    harness.api.fail_once("chat.update", "ratelimited")
    await sender.interactive(button(ACTION_DISMISS, flag_id, MODERATOR, REVIEW_CHANNEL, card))
    await services.work.drain()
    outcome = harness.api.called("chat.postMessage", channel=ARTIST)[-1]["text"]
    assert outcome == "Your lookalike report about `style-04` was reviewed and dismissed."
    assert ephemeral_texts(harness.api, MODERATOR) == [CARD_NOT_UPDATED]


async def test_artwork_is_not_searched_when_its_thread_cannot_be_read(harness: SlackHarness) -> None:
    sender, services = harness.start()
    thread = await open_report(harness, sender, services, "style-03")
    harness.api.fail_once("conversations.replies", "ratelimited")
    await send_artwork(harness, sender, services, thread, "style-03")
    assert ephemeral_texts(harness.api, ARTIST) == [THREAD_UNREADABLE]
    assert results(harness.api, dm(ARTIST)) == []
    assert harness.api.posted(REVIEW_CHANNEL) == []

    # Sent again once Slack answers, the artwork files the report.
    await send_artwork(harness, sender, services, thread, "style-03")
    assert len(harness.api.posted(REVIEW_CHANNEL)) == 1
    assert results(harness.api, dm(ARTIST)) == []
