"""Searching, paging and rating through signed Slack requests, the mock Web API and the real service."""

from __future__ import annotations

import time
from typing import Any

import pytest

from bot.core.paging import parse_footer
from bot.core.replies import NO_IMAGE, SERVICE_DOWN
from bot.slack.blocks import ACTION_MORE, REF_BLOCK, ref_text
from bot.slack.listeners.shortcuts.find_lora import FIND_LORA
from bot.slack.search import reaction_kind
from tests.bot.slack.conftest import CHANNEL, NSFW_CHANNEL, USER, SlackHarness
from tests.helpers.slack_fakes import (
    BOT_USER,
    SIGNING_SECRET,
    button,
    mention,
    message_shortcut,
    reaction,
)

pytestmark = pytest.mark.db


def results(api: Any, channel: str) -> list[dict[str, Any]]:
    """The app's results messages in a channel, oldest first."""
    return [m for m in api.posted(channel) if ref_text(m.get("blocks") or []) is not None]


def titles(message: dict[str, Any]) -> list[str]:
    """Result names from the section blocks: '*#1 <url|Style 3>*' -> 'Style 3'."""
    names = []
    for block in message["blocks"]:
        text = (block.get("text") or {}).get("text", "")
        if text.startswith("*#"):
            names.append(text.split("|", 1)[1].split(">", 1)[0])
    return names


def ephemeral_texts(api: Any, user: str) -> list[str]:
    return [c["text"] for c in api.called("chat.postEphemeral", user=user)]


async def test_mention_with_an_image_answers_in_its_thread(harness: SlackHarness) -> None:
    sender, services = harness.start()
    event = mention(CHANNEL, USER, [harness.style_file("style-03")], ts="1699999999.000100")

    started = time.monotonic()
    response = await sender.event(event)
    assert response.status == 200
    assert time.monotonic() - started < 3.0  # acknowledged before any of the work

    await services.work.drain()
    [message] = results(harness.api, CHANNEL)
    assert message["thread_ts"] == "1699999999.000100"
    assert titles(message)[0] == "Style 3"
    assert len(titles(message)) == 5
    blocks = {b.get("block_id"): b for b in message["blocks"]}
    ref = parse_footer(ref_text(message["blocks"]))
    assert ref is not None
    assert (ref.offset, ref.limit) == (0, 5)
    assert "results 1–5 of 11" in blocks[REF_BLOCK]["elements"][0]["text"]
    assert blocks["findlora_more"]["elements"][0]["action_id"] == ACTION_MORE
    section = message["blocks"][2]["text"]["text"]
    assert "Score:" in section
    assert "Suggested prompt:\n```" in section
    assert "&lt;lora:style-" in section  # the weight tag, escaped for mrkdwn
    assert "trig3" in section
    assert message["text"].startswith("findlora · results 1–5 of 11")

    # Hints for paging and rating, and one transfer sheet per result uploaded into the thread.
    assert [c["name"] for c in harness.api.called("reactions.add")] == ["arrow_right", "+1", "-1"]
    [complete] = harness.api.called("files.completeUploadExternal")
    assert complete["channel_id"] == CHANNEL
    assert complete["thread_ts"] == "1699999999.000100"
    assert next(f["title"] for f in complete["files"]) == "#1 Style 3"
    assert len(complete["files"]) == 5
    assert all(harness.api.uploads[f["id"]][:4] == b"RIFF" for f in complete["files"])  # WebP sheets


async def test_an_edited_or_redelivered_mention_is_searched_once(harness: SlackHarness) -> None:
    sender, services = harness.start()
    event = mention(CHANNEL, USER, [harness.style_file("style-03")], ts="1699999999.000400")
    await sender.event(event)
    await sender.event(event)  # Slack redelivers an event it thinks was missed
    # Editing the message sends app_mention again: same ts, same files.
    await sender.event({**event, "edited": {"user": USER, "ts": "1699999999.000500"}})
    await services.work.drain()
    assert len(results(harness.api, CHANNEL)) == 1
    assert ephemeral_texts(harness.api, USER) == []


async def test_a_badly_signed_request_is_refused(harness: SlackHarness) -> None:
    sender, services = harness.start()
    event = mention(CHANNEL, USER, [harness.style_file("style-03")])
    response = await sender.event(event, secret=SIGNING_SECRET + "-wrong")
    await services.work.drain()
    assert response.status == 401
    assert harness.api.calls == []


async def test_mention_without_an_image_says_what_to_do(harness: SlackHarness) -> None:
    sender, services = harness.start()
    await sender.event(mention(CHANNEL, USER, []))
    await services.work.drain()
    assert ephemeral_texts(harness.api, USER) == [NO_IMAGE]
    assert results(harness.api, CHANNEL) == []


async def test_message_shortcut_acks_first_then_answers_in_the_thread(harness: SlackHarness) -> None:
    sender, services = harness.start()
    original = harness.api.post_as_user(
        CHANNEL,
        "U0BOB",
        "look at this",
        files=[harness.style_file("style-07")],
        thread_ts="1699990000.000001",
    )
    payload = message_shortcut(FIND_LORA, USER, CHANNEL, original, harness.api.response_url)
    response = await sender.interactive(payload)
    assert response.status == 200
    assert services.work.busy  # the search runs after the acknowledgement
    assert results(harness.api, CHANNEL) == []
    await services.work.drain()
    [message] = results(harness.api, CHANNEL)
    assert message["thread_ts"] == "1699990000.000001"
    assert titles(message)[0] == "Style 7"


async def test_paging_by_reaction_and_button_survives_a_restart(harness: SlackHarness) -> None:
    sender, services = harness.start()
    await sender.event(mention(CHANNEL, USER, [harness.style_file("style-03")], ts="1699999999.000100"))
    await services.work.drain()
    [first] = results(harness.api, CHANNEL)

    await sender.event(reaction(USER, "arrow_right", CHANNEL, first["ts"]))
    await services.work.drain()
    pages = results(harness.api, CHANNEL)
    assert len(pages) == 2
    second = pages[1]
    assert second["thread_ts"] == "1699999999.000100"
    assert "results 6–10 of 11" in ref_text(second["blocks"])
    assert not set(titles(first)) & set(titles(second))
    # The first page lost its More button, so another ➡️ on it does not post page 2 again.
    assert "findlora_more" not in {
        b.get("block_id") for b in harness.api.message(CHANNEL, first["ts"])["blocks"]
    }
    await sender.event(reaction("U0CAROL", "arrow_right", CHANNEL, first["ts"]))
    await services.work.drain()
    assert len(results(harness.api, CHANNEL)) == 2

    # A new process pages on from what the message itself says.
    sender2, services2 = harness.start()
    # Slack may leave the thread out of the message object and name it in the container only.
    shown = {k: v for k, v in harness.api.message(CHANNEL, second["ts"]).items() if k != "thread_ts"}
    more = button(ACTION_MORE, "", USER, CHANNEL, shown, thread_ts="1699999999.000100")
    response = await sender2.interactive(more)
    assert response.status == 200
    await services2.work.drain()
    third = results(harness.api, CHANNEL)[2]
    assert third["thread_ts"] == "1699999999.000100"
    assert "results 11–11 of 11" in ref_text(third["blocks"])
    assert "findlora_more" not in {b.get("block_id") for b in third["blocks"]}
    seen = titles(first) + titles(second) + titles(third)
    assert len(seen) == len(set(seen)) == 11  # the NSFW LoRA is not listed here


async def test_more_pressed_twice_at_once_posts_the_next_page_once(harness: SlackHarness) -> None:
    sender, services = harness.start()
    await sender.event(mention(CHANNEL, USER, [harness.style_file("style-03")], ts="1699999999.000200"))
    await services.work.drain()
    [first] = results(harness.api, CHANNEL)
    shown = harness.api.message(CHANNEL, first["ts"])
    more = button(ACTION_MORE, "", USER, CHANNEL, shown, thread_ts="1699999999.000200")
    for _ in range(2):  # the second press comes with the message as it was, More button included
        assert (await sender.interactive(more)).status == 200
    await services.work.drain()
    assert len(results(harness.api, CHANNEL)) == 2


async def test_reactions_on_other_messages_and_the_apps_own_are_ignored(harness: SlackHarness) -> None:
    sender, services = harness.start()
    other = harness.api.post_as_user(CHANNEL, USER, "hello")
    await sender.event(reaction("U0BOB", "arrow_right", CHANNEL, other["ts"], item_user=USER))
    await sender.event(reaction(BOT_USER, "arrow_right", CHANNEL, "1699999999.000001"))
    await services.work.drain()
    assert harness.api.called("conversations.replies") == []


async def test_thumbs_rate_the_first_result_once_per_person(harness: SlackHarness) -> None:
    sender, services = harness.start()
    await sender.event(mention(CHANNEL, USER, [harness.style_file("style-02")]))
    await services.work.drain()
    [page] = results(harness.api, CHANNEL)
    ref = parse_footer(ref_text(page["blocks"]))
    assert ref is not None

    await sender.event(reaction("U0BOB", "+1::skin-tone-3", CHANNEL, page["ts"]))
    await services.work.drain()
    assert ephemeral_texts(harness.api, "U0BOB") == []
    # The vote was stored for this person: voting again through the service replaces it.
    lora_id = int(ref_text(page["blocks"]).rsplit("lora ", 1)[1])
    replaced = await services.client.record_feedback(
        ref.search_id, lora_id, up=False, user="slack:T0TEAM:U0BOB"
    )
    assert replaced is False
    first = await services.client.record_feedback(ref.search_id, lora_id, up=True, user="slack:T0TEAM:U0DAN")
    assert first is True


async def test_nsfw_loras_only_in_channels_that_allow_them(harness: SlackHarness) -> None:
    sender, services = harness.start()
    await sender.event(mention(CHANNEL, USER, [harness.style_file("style-05")]))
    await sender.event(mention(NSFW_CHANNEL, USER, [harness.style_file("style-05")]))
    await services.work.drain()
    [general] = results(harness.api, CHANNEL)
    [allowed] = results(harness.api, NSFW_CHANNEL)
    assert "Style 5" not in titles(general)
    assert titles(allowed)[0] == "Style 5"


async def test_files_need_the_bot_token_and_a_real_image(harness: SlackHarness) -> None:
    sender, services = harness.start()
    fake = harness.api.share_file("not-really.png", b"this is text", "image/png")
    await sender.event(mention(CHANNEL, USER, [fake]))
    foreign = dict(harness.style_file("style-01"), url_private_download="https://evil.example/x.png")
    await sender.event(mention(CHANNEL, "U0BOB", [foreign]))
    await services.work.drain()
    assert ephemeral_texts(harness.api, USER) == [
        "I can't use that image: not-really.png is not a readable PNG, JPEG, WebP or GIF image."
    ]
    assert ephemeral_texts(harness.api, "U0BOB") == [
        "I can't use that image: that file is not hosted where I can fetch it from; attach it directly."
    ]


async def test_rate_limit_and_service_down_are_friendly(harness: SlackHarness) -> None:
    sender, services = harness.start(searches_per_minute=1)
    await sender.event(mention(CHANNEL, USER, [harness.style_file("style-01")]))
    await sender.event(mention(CHANNEL, USER, [harness.style_file("style-01")]))
    await services.work.drain()
    [cooldown] = ephemeral_texts(harness.api, USER)
    assert cooldown.startswith("You're searching too quickly; try again in")

    down_sender, down = harness.start(service="127.0.0.1:1")
    await down_sender.event(mention(CHANNEL, "U0BOB", [harness.style_file("style-01")]))
    await down.work.drain()
    assert ephemeral_texts(harness.api, "U0BOB") == [SERVICE_DOWN]


def test_reaction_names() -> None:
    assert reaction_kind("arrow_right") == "next"
    assert reaction_kind("+1::skin-tone-2") == "up"
    assert reaction_kind("thumbsdown") == "down"
    assert reaction_kind("arrow_left") is None
