"""Registration and lookalike reports through signed Slack requests: permission checks by user id
and user group, the modal flows, and flag → review → takedown against the real service."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from unittest import mock

import pytest

from bot.core.permissions import NOT_A_MODERATOR
from bot.slack.blocks import ACTION_APPROVE, ACTION_DISMISS, FLAG_VIEW, REGISTER_VIEW, ref_text
from bot.slack.flagging import ALREADY_REVIEWED, ALREADY_SENT
from bot.slack.registration import split_trigger_words
from protos import findlora_pb2 as pb
from tests.bot.slack.conftest import (
    ARTIST,
    CHANNEL,
    GROUP_MODERATOR,
    MODERATOR,
    REVIEW_CHANNEL,
    USER,
    SlackHarness,
)
from tests.helpers.jobs import BOT_UPDATE_INTERVAL_S, LOOKALIKE, JobDriver, assert_progress_shown
from tests.helpers.slack_fakes import SignedSender, button, mention, view_submission
from tests.helpers.waits import eventually

pytestmark = pytest.mark.db
URL = "https://huggingface.co/x/y/resolve/main/style.safetensors"


def ephemeral_texts(api: Any, user: str) -> list[str]:
    return [c["text"] for c in api.called("chat.postEphemeral", user=user)]


def dm(user: str) -> str:
    return "D" + user[1:]


async def search_titles(harness: SlackHarness, sender: SignedSender, services: Any, slug: str) -> list[str]:
    before = len(harness.api.posted(CHANNEL))
    await sender.event(mention(CHANNEL, USER, [harness.style_file(slug)]))
    await services.work.drain()
    [page] = [m for m in harness.api.posted(CHANNEL)[before:] if ref_text(m.get("blocks") or [])]
    return [
        b["text"]["text"].split("|", 1)[1].split(">", 1)[0]
        for b in page["blocks"]
        if (b.get("text") or {}).get("text", "").startswith("*#")
    ]


async def test_registerlora_is_for_moderators_by_user_id_or_user_group(harness: SlackHarness) -> None:
    sender, services = harness.start()
    for user in (USER, MODERATOR, GROUP_MODERATOR):
        response = await sender.command("/registerlora", user, CHANNEL)
        assert response.status == 200
    await services.work.drain()
    # Through the command's response_url, only to the one who asked.
    assert harness.api.responses == [{"text": NOT_A_MODERATOR, "response_type": "ephemeral"}]
    opened = harness.api.called("views.open")
    assert [v["view"]["callback_id"] for v in opened] == [REGISTER_VIEW, REGISTER_VIEW]
    # The group's members were read once and reused for the rest of the window.
    assert [c["usergroup"] for c in harness.api.called("usergroups.users.list")] == ["S0MODS"]


REFUSED_URL = "https://example.org/x/y/style.safetensors"  # outside the service's download allowlist


async def test_register_modal_checks_fields_then_shows_the_services_answer(harness: SlackHarness) -> None:
    sender, services = harness.start()
    bad = await sender.interactive(
        view_submission(REGISTER_VIEW, MODERATOR, {"url": "http://x.org/a", "name": ""})
    )
    assert bad.status == 200
    assert json.loads(bad.body)["response_action"] == "errors"
    assert set(json.loads(bad.body)["errors"]) == {"url", "name"}

    ok = await sender.interactive(
        view_submission(REGISTER_VIEW, MODERATOR, {"url": REFUSED_URL, "name": "Y"})
    )
    assert ok.status == 200
    assert ok.body == ""
    stranger = await sender.interactive(
        view_submission(REGISTER_VIEW, USER, {"url": REFUSED_URL, "name": "Y"})
    )
    assert stranger.status == 200
    await services.work.drain()
    [answer] = harness.api.called("chat.postMessage", channel=MODERATOR)
    assert answer["text"].startswith("I can't do that: downloads from example.org are not allowed")
    assert [m["text"] for m in harness.api.called("chat.postMessage", channel=USER)] == [NOT_A_MODERATOR]


async def test_registration_progress_is_edited_into_the_dm(harness: SlackHarness, jobs: JobDriver) -> None:
    """The real service queues the job; its steps, written as a worker would, reach the
    moderator's DM through WatchJob, edited into one status message."""
    sender, services = harness.start()

    def shown() -> list[str]:
        return [c["text"] for c in harness.api.called("chat.update", channel=dm(GROUP_MODERATOR))]

    values = {"url": URL, "name": "A", "base_model": "sdxl", "trigger_words": "p, q"}
    await sender.interactive(view_submission(REGISTER_VIEW, GROUP_MODERATOR, values))
    job = await jobs.job_for(URL)
    meta = job.metadata
    assert (meta["name"], meta["base_model"], meta["trigger_words"]) == ("A", "sdxl", ["p", "q"])
    assert job.requested_by == "slack:T0TEAM:U0GROUPMOD"
    [status] = await eventually(
        lambda: harness.api.called("chat.postMessage", channel=GROUP_MODERATOR), "the status message"
    )
    assert status["text"] == f"Registration `{job.id}` queued."

    await eventually(shown, "the queued state in the DM")
    await asyncio.sleep(BOT_UPDATE_INTERVAL_S)
    await jobs.run(job, "fetch", 0.1, "downloaded 3 MiB")
    await eventually(lambda: len(shown()) > 1, "the running step in the DM")
    await jobs.succeed(job, [LOOKALIKE])
    await services.work.drain()

    assert_progress_shown(shown())
    assert harness.api.called("chat.postMessage", channel=GROUP_MODERATOR) == [status]  # no refusal


async def open_report(harness: SlackHarness, sender: SignedSender, services: Any, lora: str) -> str:
    """The artist runs /flaglookalike and fills the modal; returns the DM thread asking for artwork."""
    await sender.command("/flaglookalike", ARTIST, CHANNEL)
    await services.work.drain()
    assert harness.api.called("views.open")[-1]["view"]["callback_id"] == FLAG_VIEW
    await sender.interactive(view_submission(FLAG_VIEW, ARTIST, {"lora": lora, "note": "that is my <style>"}))
    await services.work.drain()
    prompt = harness.api.posted(dm(ARTIST))[-1]
    assert prompt["text"].startswith("Reply in this thread with up to 3 images of your own artwork")
    return str(prompt["ts"])


async def send_artwork(
    harness: SlackHarness, sender: SignedSender, services: Any, thread: str, slug: str
) -> None:
    artwork = {
        "type": "message",
        "subtype": "file_share",
        "channel_type": "im",
        "channel": dm(ARTIST),
        "user": ARTIST,
        "ts": harness.api.next_ts(),
        "thread_ts": thread,
        "files": [harness.style_file(slug, "my-painting.png")],
    }
    await sender.event(artwork)
    await services.work.drain()


async def report(harness: SlackHarness, sender: SignedSender, services: Any, lora: str, slug: str) -> str:
    """The artist's side of a report: command, modal, artwork in the DM thread; returns the thread."""
    thread = await open_report(harness, sender, services, lora)
    await send_artwork(harness, sender, services, thread, slug)
    return thread


async def test_flag_review_takedown_and_the_artist_hears_back(harness: SlackHarness) -> None:
    sender, services = harness.start()
    assert (await search_titles(harness, sender, services, "style-03"))[0] == "Style 3"

    thread = await report(harness, sender, services, "https://example.org/style-03", "style-03")
    replies = [m for m in harness.api.posted(dm(ARTIST)) if m.get("thread_ts") == thread]
    assert "ranks *#1*" in replies[0]["text"]
    assert harness.api.message(dm(ARTIST), thread)["metadata"]["event_type"] == "findlora_flag_sent"

    [card] = harness.api.posted(REVIEW_CHANNEL)
    texts = json.dumps(card["blocks"])
    assert "Lookalike report:* Style 3 (`style-03`)" in texts
    assert f"<@{ARTIST}>" in texts
    assert "that is my &lt;style&gt;" in texts  # the note cannot mention or link anyone
    flag_id = card["blocks"][-1]["elements"][0]["value"]
    uploads = harness.api.called("files.completeUploadExternal", channel_id=REVIEW_CHANNEL)
    assert [f["title"] for f in uploads[0]["files"]] == ["style-03: nearest transfers", "artwork 1"]
    assert uploads[0]["thread_ts"] == card["ts"]

    # A second image in the same thread does not file a second report.
    await send_artwork(harness, sender, services, thread, "style-03")
    assert harness.api.posted(dm(ARTIST))[-1]["text"] == ALREADY_SENT
    assert len(harness.api.posted(REVIEW_CHANNEL)) == 1

    # Not a moderator, or a moderator outside the review channel: refused, the flag stays open.
    await sender.interactive(button(ACTION_APPROVE, flag_id, USER, REVIEW_CHANNEL, card))
    await sender.interactive(button(ACTION_APPROVE, flag_id, MODERATOR, CHANNEL, card))
    await services.work.drain()
    assert ephemeral_texts(harness.api, USER) == [NOT_A_MODERATOR]
    assert ephemeral_texts(harness.api, MODERATOR) == [NOT_A_MODERATOR]
    [still_open] = await services.client.list_flags(pb.FLAG_STATUS_OPEN)
    assert still_open.flag_id == flag_id

    await sender.interactive(button(ACTION_APPROVE, flag_id, GROUP_MODERATOR, REVIEW_CHANNEL, card))
    await services.work.drain()
    decided = harness.api.message(REVIEW_CHANNEL, card["ts"])
    assert "*Status:* approved" in json.dumps(decided["blocks"])
    assert f"<@{GROUP_MODERATOR}>" in json.dumps(decided["blocks"])
    assert all(b["type"] != "actions" for b in decided["blocks"])
    outcome = harness.api.called("chat.postMessage", channel=ARTIST)[-1]["text"]
    assert outcome == "Your lookalike report about `style-03` was approved: the LoRA has been taken down."
    assert "Style 3" not in await search_titles(harness, sender, services, "style-03")

    # Deciding twice is refused by the service, and said so calmly, without internal user keys.
    await sender.interactive(button(ACTION_DISMISS, flag_id, MODERATOR, REVIEW_CHANNEL, card))
    await services.work.drain()
    [answer] = ephemeral_texts(harness.api, MODERATOR)[1:]
    assert answer == ALREADY_REVIEWED
    # Beside the card, where the one who pressed sees it, not in the card's artwork thread.
    refusals = harness.api.called("chat.postEphemeral", user=MODERATOR, channel=REVIEW_CHANNEL)
    assert refusals
    assert all(call.get("thread_ts") is None for call in refusals)


async def test_an_nsfw_loras_transfers_go_only_to_a_channel_that_allows_nsfw(harness: SlackHarness) -> None:
    """The artist's DM thread and the review card carried an NSFW LoRA's sample transfers; search
    shows them only in the channels FINDLORA_SLACK_NSFW_CHANNEL_IDS lists."""
    sender, services = harness.start()
    thread = await report(harness, sender, services, "style-05", "style-05")
    replies = [m for m in harness.api.posted(dm(ARTIST)) if m.get("thread_ts") == thread]
    assert "marked NSFW" in replies[0]["text"]
    uploads = harness.api.called("files.completeUploadExternal")
    assert [f["title"] for call in uploads for f in call["files"]] == ["artwork 1"]
    [card] = harness.api.posted(REVIEW_CHANNEL)
    assert "marked NSFW" in json.dumps(card["blocks"])
    flag_id = card["blocks"][-1]["elements"][1]["value"]
    await services.client.review_flag(flag_id, approve=False, moderator="slack:T1:U9")

    sender, services = harness.start(nsfw_channel_ids=frozenset({REVIEW_CHANNEL}))
    await report(harness, sender, services, "style-05", "style-05")  # reported again: a new card
    assert len(harness.api.posted(REVIEW_CHANNEL)) == 2
    card = harness.api.posted(REVIEW_CHANNEL)[-1]
    assert "marked NSFW" not in json.dumps(card["blocks"])
    uploads = harness.api.called("files.completeUploadExternal", channel_id=REVIEW_CHANNEL)
    assert [f["title"] for f in uploads[-1]["files"]] == ["style-05: nearest transfers", "artwork 1"]


async def test_dismissed_flag_keeps_the_lora(harness: SlackHarness) -> None:
    sender, services = harness.start()
    await report(harness, sender, services, "style-04", "style-04")
    [card] = harness.api.posted(REVIEW_CHANNEL)
    flag_id = card["blocks"][-1]["elements"][1]["value"]
    await sender.interactive(button(ACTION_DISMISS, flag_id, MODERATOR, REVIEW_CHANNEL, card))
    await services.work.drain()
    assert "reviewed and dismissed" in harness.api.called("chat.postMessage", channel=ARTIST)[-1]["text"]
    assert "Style 4" in await search_titles(harness, sender, services, "style-04")


async def test_flag_modal_needs_a_lora_and_reports_are_rate_limited(harness: SlackHarness) -> None:
    sender, services = harness.start(flags_per_hour=1)
    empty = await sender.interactive(view_submission(FLAG_VIEW, ARTIST, {"lora": " ", "note": ""}))
    assert json.loads(empty.body)["errors"] == {"lora": "Which LoRA? Give its link or slug."}

    await report(harness, sender, services, "style-01", "style-01")
    await report(harness, sender, services, "style-02", "style-02")
    assert harness.api.posted(dm(ARTIST))[-1]["text"].startswith("You're reporting too quickly")
    assert len(harness.api.posted(REVIEW_CHANNEL)) == 1


async def test_unknown_lora_is_said_plainly_and_costs_no_report(harness: SlackHarness) -> None:
    sender, services = harness.start(flags_per_hour=1)
    await report(harness, sender, services, "no-such-lora", "style-01")
    assert harness.api.posted(dm(ARTIST))[-1]["text"] == "No LoRA matches 'no-such-lora'."
    assert harness.api.posted(REVIEW_CHANNEL) == []
    # Nothing was filed, so the hour's one report is still there for the right name.
    await report(harness, sender, services, "style-01", "style-01")
    assert len(harness.api.posted(REVIEW_CHANNEL)) == 1


def test_trigger_words_are_comma_separated() -> None:
    assert split_trigger_words(" a , b,,c ") == ["a", "b", "c"]


async def test_contact_sheets_are_drawn_off_the_event_loop(harness: SlackHarness) -> None:
    """The flag's and the search's contact sheets were drawn on Bolt's event loop: the app
    stopped acknowledging Slack's events (3 seconds each) while it decoded thumbnails."""
    import threading

    from bot.slack import flagging, search
    from tests.helpers.threads import ThreadSpy

    loop_thread = threading.get_ident()
    flag_sheets, search_sheets = ThreadSpy(flagging.contact_sheet), ThreadSpy(search.contact_sheet)
    with (
        mock.patch.object(flagging, "contact_sheet", flag_sheets),
        mock.patch.object(search, "contact_sheet", search_sheets),
    ):
        sender, services = harness.start()
        await report(harness, sender, services, "style-04", "style-04")
        assert "Style 4" in await search_titles(harness, sender, services, "style-04")
    assert flag_sheets.ran_off(loop_thread)
    assert search_sheets.ran_off(loop_thread)
