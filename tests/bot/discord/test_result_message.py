"""A results page as Discord will take it: within the embeds' character limit, with links it
accepts, and no text of a user's that can ping or break out of its code span."""

from __future__ import annotations

import io
import threading
import uuid
from dataclasses import replace
from unittest import mock

import pytest
from PIL import Image

from bot.core.paging import PageRef
from bot.core.rendering import ResultCard, ResultsPage, TransferImage, contact_sheet
from bot.discord.bot import FindLoraBot
from bot.discord.exts.search import _message
from bot.discord.exts.search._message import EMBEDS_MAX_CHARS, page_message
from tests.helpers.threads import ThreadSpy

HOSTILE = "cat` @everyone <@&123> `x"


def card(rank: int, *, url: str = "https://civitai.com/models/1", name_chars: int = 100) -> ResultCard:
    transfers = tuple(
        TransferImage(f"sample-{'x' * 60}-{i}", f"{i}.webp", b"", "image/webp", 0.1) for i in range(3)
    )
    return ResultCard(
        rank=rank,
        lora_id=rank,
        slug=f"lora-{rank}",
        title="N" * name_chars,
        url=url,
        base_model="SDXL 1.0",
        score=0.5,
        style_distance=0.4,
        suggested_prompt=(HOSTILE + " ") * 11,  # about the 300 characters the renderer keeps
        trigger_words=(),
        nsfw=False,
        transfers=transfers,
    )


def page(cards: list[ResultCard], prompt: str = "a castle") -> ResultsPage:
    return ResultsPage(PageRef(str(uuid.uuid4()), 0, len(cards)), 50, prompt, tuple(cards))


@pytest.mark.parametrize("count", [1, 5, 10])
async def test_a_full_page_of_long_results_fits_discords_limit(count: int) -> None:
    message = await page_message(page([card(r + 1) for r in range(count)]))
    assert sum(len(e) for e in message.embeds) <= EMBEDS_MAX_CHARS
    assert all(e.title and e.title.startswith(f"#{i + 1} ") for i, e in enumerate(message.embeds))
    if count == 1:  # room for the whole prompt: nothing is cut
        assert "…" not in str(message.embeds[0].fields[-1].value)


async def test_user_text_cannot_leave_its_code_span_or_ping() -> None:
    message = await page_message(page([card(1)], prompt=HOSTILE))
    assert message.content.count("`") == 2  # the span's own two backticks
    prompt_field = message.embeds[0].fields[-1].value or ""
    assert prompt_field.count("`") == 6  # the fence's, none of the prompt's
    mentions = FindLoraBot(services=None).allowed_mentions  # type: ignore[arg-type]  # only the client's options
    assert mentions is not None
    assert (mentions.everyone, mentions.roles, mentions.users) == (False, False, False)


@pytest.mark.parametrize("url", ["civitai.com/models/1", "javascript:alert(1)", ""])
async def test_a_link_discord_would_refuse_is_left_out(url: str) -> None:
    message = await page_message(page([card(1, url=url)]))
    assert message.embeds[0].url is None
    assert (await page_message(page([card(1)]))).embeds[0].url == "https://civitai.com/models/1"


async def test_contact_sheets_are_drawn_off_the_event_loop() -> None:
    """A page's thumbnails were decoded and resized on the event loop: the bot stopped answering
    (interactions have 3 seconds, the gateway wants its heartbeats) while it drew them."""
    thumbnail = io.BytesIO()
    Image.new("RGB", (64, 48), "red").save(thumbnail, format="WEBP")
    drawn = replace(
        card(1), transfers=(TransferImage("s1", "1.webp", thumbnail.getvalue(), "image/webp", 0.1),)
    )
    spy = ThreadSpy(contact_sheet)  # the real drawing, noting where it ran
    with mock.patch.object(_message, "contact_sheet", spy):
        message = await page_message(page([drawn]))
    assert [f.filename for f in message.files] == ["result-1.webp"]
    assert spy.ran_off(threading.get_ident())
