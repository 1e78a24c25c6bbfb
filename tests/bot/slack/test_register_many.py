"""A list of LoRAs sent to the app's DM: moderators get it registered (the real service answers),
the summary edited into a reply in the file's thread; anyone else is told no. An image sent with
notes beside it is a search."""

from __future__ import annotations

from typing import Any

import pytest

from bot.core.permissions import NOT_A_MODERATOR
from bot.slack.blocks import ref_text
from tests.bot.slack.conftest import MODERATOR, USER, SlackHarness

pytestmark = pytest.mark.db
TOML = """
[[lora]]
url = "https://example.org/ink.safetensors"
name = "Ink"

[[lora]]
path = "paper.safetensors"
name = "Paper"
colour = "red"
"""


def dm(user: str) -> str:
    return "D" + user[1:]


async def send_list(harness: SlackHarness, user: str) -> str:
    return await send_files(
        harness, user, [harness.api.share_file("spring.toml", TOML.encode(), "application/toml")]
    )


async def send_files(
    harness: SlackHarness, user: str, files: list[dict[str, Any]], deliveries: int = 1
) -> str:
    """Files sent to the app's DM in one message (delivered by Slack `deliveries` times); returns
    its ts (the thread of the answers)."""
    sender, services = harness.start()
    ts = harness.api.next_ts()
    for _ in range(deliveries):
        await sender.event(
            {
                "type": "message",
                "subtype": "file_share",
                "channel_type": "im",
                "channel": dm(user),
                "user": user,
                "ts": ts,
                "files": files,
            }
        )
    await services.work.drain()
    return ts


async def test_a_list_in_the_dm_is_registered_for_moderators(harness: SlackHarness) -> None:
    thread = await send_list(harness, MODERATOR)
    [reply] = [m for m in harness.api.posted(dm(MODERATOR)) if m.get("thread_ts") == thread]
    lines = reply["text"].splitlines()
    assert lines[0] == "❌ 0 registered, 0 skipped (0 already there, 0 already queued), 2 failed."
    assert lines[1].startswith("• line 2: downloads from example.org are not allowed")
    assert lines[2].startswith("• line 6: unknown field 'colour'")

    thread = await send_list(harness, USER)
    replies = [m for m in harness.api.posted(dm(USER)) if m.get("thread_ts") == thread]
    assert [m["text"] for m in replies] == [NOT_A_MODERATOR]


async def test_an_image_with_notes_is_a_search_for_anyone(harness: SlackHarness) -> None:
    notes = harness.api.share_file("notes.txt", b"seen on a poster in town", "text/plain")
    thread = await send_files(harness, USER, [harness.style_file("style-03"), notes])
    replies = [m for m in harness.api.posted(dm(USER)) if m.get("thread_ts") == thread]
    assert [m["text"] for m in replies if m["text"] == NOT_A_MODERATOR] == []
    [page] = [m for m in replies if ref_text(m.get("blocks") or [])]
    assert "|Style 3>" in page["blocks"][2]["text"]["text"]


async def test_a_redelivered_dm_is_handled_once(harness: SlackHarness) -> None:
    thread = await send_files(harness, USER, [harness.style_file("style-03")], deliveries=2)
    pages = [
        m
        for m in harness.api.posted(dm(USER))
        if m.get("thread_ts") == thread and ref_text(m.get("blocks") or [])
    ]
    assert len(pages) == 1
