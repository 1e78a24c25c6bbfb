"""A results page as a Discord message: one embed per result, one transfer sheet per result."""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass
from typing import Any

import discord

from bot.core.paging import result_footer
from bot.core.rendering import REMOVED_PAGE, ResultCard, ResultsPage, contact_sheet
from bot.discord.exts.search._components import results_view
from findlora_client.links import MAX_LINK_CHARS

NEXT, PREVIOUS, THUMBS_UP, THUMBS_DOWN = "➡️", "⬅️", "👍", "👎"
PAGE_REACTIONS = (PREVIOUS, NEXT, THUMBS_UP, THUMBS_DOWN)
EMBED_COLOUR = discord.Colour.from_rgb(122, 90, 248)


@dataclass
class PageMessage:
    content: str
    embeds: list[discord.Embed]
    files: list[discord.File]
    view: discord.ui.View

    def send_kwargs(self) -> dict[str, Any]:
        return {"content": self.content, "embeds": self.embeds, "files": self.files, "view": self.view}

    def edit_kwargs(self) -> dict[str, Any]:
        return {"content": self.content, "embeds": self.embeds, "attachments": self.files, "view": self.view}


# Discord refuses a message whose embeds hold more than 6,000 characters together (HTTP 400).
EMBEDS_MAX_CHARS = 6000
PROMPT_FIELD = "Suggested prompt"


def code_safe(text: str) -> str:
    """Text for an inline code span or a fenced block: a backtick would close it, and what
    follows (an @everyone, a role mention, markdown) would be read as the message's own."""
    return text.replace("`", "'")


def web_link(url: str) -> str | None:
    """Discord takes only http(s) links in an embed; anything else would fail the whole message."""
    return url if url.startswith(("https://", "http://")) and len(url) <= MAX_LINK_CHARS else None


def _fit(embed: discord.Embed, budget: int) -> None:
    """Shorten the suggested prompt, then the description, until the embed holds `budget`
    characters (its title, fields and footer are short and bounded already)."""
    over = len(embed) - budget
    for index, field in enumerate(embed.fields):
        if over > 0 and field.name == PROMPT_FIELD and field.value:
            text = field.value.removeprefix("```\n").removesuffix("\n```")
            keep = len(text) - over - 1
            if keep >= 20:
                embed.set_field_at(index, name=PROMPT_FIELD, value=f"```\n{text[:keep]}…\n```", inline=False)
            else:
                embed.remove_field(index)
            over = len(embed) - budget
    if over > 0 and embed.description:
        embed.description = embed.description[: max(0, len(embed.description) - over - 1)] + "…"


def _embed(card: ResultCard, page: ResultsPage, sheet_name: str | None) -> discord.Embed:
    embed = discord.Embed(
        title=f"#{card.rank} {card.title}"[:256], url=web_link(card.url), colour=EMBED_COLOUR
    )
    embed.add_field(name="Base model", value=card.base_model or "unknown")
    embed.add_field(name="Score", value=card.score_text)
    if card.suggested_prompt:
        # A fenced block: Discord offers a copy button for it.
        embed.add_field(
            name=PROMPT_FIELD, value=f"```\n{code_safe(card.suggested_prompt)}\n```", inline=False
        )
    if card.transfers:
        samples = ", ".join(t.sample_id for t in card.transfers)
        embed.description = f"Sample transfers nearest your image: {samples}"
    if sheet_name:
        embed.set_image(url=f"attachment://{sheet_name}")
    embed.set_footer(text=result_footer(page.ref, page.total, card.lora_id))
    return embed


async def page_message(page: ResultsPage) -> PageMessage:
    # Decoding and resizing a page of thumbnails takes a while: in a thread, so the bot's event
    # loop goes on answering interactions (each has 3 seconds) and the gateway's heartbeats.
    sheets = await asyncio.to_thread(lambda: [contact_sheet(card.transfers) for card in page.cards])
    return build_page_message(page, sheets)


def build_page_message(page: ResultsPage, sheets: list[bytes | None]) -> PageMessage:
    """The message of a page, given each card's contact sheet (None: no readable thumbnail)."""
    if page.pseudo_prompt:
        content = f"**Pseudo-prompt:** `{code_safe(page.pseudo_prompt)[:1500]}`"
    else:
        content = "Ranked by style distance."
    content += " React ➡️/⬅️ to page, 👍/👎 to rate the first result, or use the buttons and menu."
    embeds, files = [], []
    for card, sheet in zip(page.cards, sheets, strict=True):
        name = f"result-{card.rank}.webp" if sheet else None
        if sheet and name:
            files.append(discord.File(io.BytesIO(sheet), filename=name))
        embeds.append(_embed(card, page, name))
    if not embeds:
        # Every LoRA of this window was hidden or taken down since the search: a card that says so
        # keeps the footer, which reaction paging reads its search and place from.
        removed = discord.Embed(description=f"{REMOVED_PAGE} Page on with ➡️.")
        removed.set_footer(text=page.footer)
        embeds.append(removed)
    for embed in embeds:
        _fit(embed, EMBEDS_MAX_CHARS // max(1, len(embeds)))
    return PageMessage(content, embeds, files, results_view(page))
