"""A results page as a Discord message: one embed per result, one transfer sheet per result."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import discord

from bot.core.paging import result_footer
from bot.core.rendering import ResultCard, ResultsPage, contact_sheet
from bot.discord.exts.search._components import results_view

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


def _embed(card: ResultCard, page: ResultsPage, sheet_name: str | None) -> discord.Embed:
    embed = discord.Embed(title=f"#{card.rank} {card.title}"[:256], url=card.url or None, colour=EMBED_COLOUR)
    embed.add_field(name="Base model", value=card.base_model or "unknown")
    embed.add_field(name="Score", value=card.score_text)
    if card.suggested_prompt:
        # A fenced block: Discord offers a copy button for it.
        embed.add_field(name="Suggested prompt", value=f"```\n{card.suggested_prompt}\n```", inline=False)
    if card.transfers:
        samples = ", ".join(t.sample_id for t in card.transfers)
        embed.description = f"Sample transfers nearest your image: {samples}"
    if sheet_name:
        embed.set_image(url=f"attachment://{sheet_name}")
    embed.set_footer(text=result_footer(page.ref, page.total, card.lora_id))
    return embed


def page_message(page: ResultsPage) -> PageMessage:
    if page.pseudo_prompt:
        content = f"**Pseudo-prompt:** `{page.pseudo_prompt}`"
    else:
        content = "Ranked by style distance."
    content += " React ➡️/⬅️ to page, 👍/👎 to rate the first result, or use the buttons and menu."
    embeds, files = [], []
    for card in page.cards:
        sheet = contact_sheet(card.transfers)
        name = f"result-{card.rank}.webp" if sheet else None
        if sheet and name:
            files.append(discord.File(io.BytesIO(sheet), filename=name))
        embeds.append(_embed(card, page, name))
    return PageMessage(content, embeds, files, results_view(page))
