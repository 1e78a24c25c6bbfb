"""Paging buttons and the rating menu. Their custom ids carry the search id and window, so they
keep working after a bot restart (discord.py dynamic items)."""

from __future__ import annotations

import re
from typing import Any, Protocol

import discord

from bot.core.paging import PageRef, ref_pattern
from bot.core.rendering import ResultsPage

SEARCH_COG = "Search"
PAGE_TEMPLATE = re.compile(rf"fl:(?P<direction>prev|next):{ref_pattern()}")
RATE_TEMPLATE = re.compile(r"fl:rate:(?P<search_id>[0-9a-f-]{36})")


class SearchActions(Protocol):
    """What the components ask of the search cog (looked up by name: no import of the cog)."""

    async def page_from_button(self, interaction: discord.Interaction[Any], target: PageRef) -> None: ...

    async def vote_from_menu(
        self, interaction: discord.Interaction[Any], search_id: str, lora_id: int, up: bool
    ) -> None: ...


def _cog(interaction: discord.Interaction[Any]) -> SearchActions:
    cog = interaction.client.get_cog(SEARCH_COG)  # type: ignore[attr-defined]
    if cog is None:
        raise RuntimeError("the search extension is not loaded")
    return cog  # type: ignore[no-any-return]


class PageButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=PAGE_TEMPLATE):
    def __init__(self, direction: str, target: PageRef, *, disabled: bool = False) -> None:
        self.direction = direction
        self.target = target
        super().__init__(
            discord.ui.Button(
                label="Previous" if direction == "prev" else "Next",
                emoji="⬅️" if direction == "prev" else "➡️",
                style=discord.ButtonStyle.secondary,
                custom_id=f"fl:{direction}:{target.encode()}",
                disabled=disabled,
            ),
            row=0,
        )

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> PageButton:
        target = PageRef(match["search_id"], int(match["offset"]), int(match["limit"]))
        return cls(match["direction"], target)

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await _cog(interaction).page_from_button(interaction, self.target)


class RateSelect(discord.ui.DynamicItem[discord.ui.Select[Any]], template=RATE_TEMPLATE):
    def __init__(self, search_id: str, options: list[discord.SelectOption] | None = None) -> None:
        self.search_id = search_id
        super().__init__(
            discord.ui.Select(
                custom_id=f"fl:rate:{search_id}",
                placeholder="Rate a result…",
                options=options or [discord.SelectOption(label="-", value="-")],
            ),
            row=1,
        )

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> RateSelect:
        return cls(match["search_id"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        data: dict[str, Any] = dict(interaction.data or {})
        values = data.get("values") or []
        choice = str(values[0]) if values else ""
        lora_id, _, vote = choice.partition(":")
        if not lora_id.isdigit() or vote not in ("up", "down"):
            return
        await _cog(interaction).vote_from_menu(interaction, self.search_id, int(lora_id), vote == "up")


def results_view(page: ResultsPage) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    previous, following = page.ref.previous(), page.ref.next(page.total)
    view.add_item(PageButton("prev", previous or page.ref, disabled=previous is None))
    view.add_item(PageButton("next", following or page.ref, disabled=following is None))
    options = []
    for card in page.cards:
        for vote, emoji in (("up", "👍"), ("down", "👎")):
            options.append(
                discord.SelectOption(
                    label=f"#{card.rank} {card.title}"[:100], value=f"{card.lora_id}:{vote}", emoji=emoji
                )
            )
    if options:
        view.add_item(RateSelect(page.ref.search_id, options[:25]))
    return view
