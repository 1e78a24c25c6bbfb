"""Approve / Dismiss on a review card; the flag id travels in the custom id (restart-proof)."""

from __future__ import annotations

import re
from typing import Any, Protocol

import discord

FLAGS_COG = "Flags"
REVIEW_TEMPLATE = re.compile(r"fl:review:(?P<flag_id>[0-9a-f-]{36}):(?P<decision>approve|dismiss)")


class Reviewer(Protocol):
    """What a review button asks of the flags cog (looked up by name: no import of the cog)."""

    async def review(self, interaction: discord.Interaction[Any], flag_id: str, *, approve: bool) -> None: ...


class ReviewButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=REVIEW_TEMPLATE):
    def __init__(self, flag_id: str, decision: str) -> None:
        self.flag_id = flag_id
        self.decision = decision
        approve = decision == "approve"
        super().__init__(
            discord.ui.Button(
                label="Approve (take down)" if approve else "Dismiss",
                style=discord.ButtonStyle.danger if approve else discord.ButtonStyle.secondary,
                custom_id=f"fl:review:{flag_id}:{decision}",
            )
        )

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> ReviewButton:
        return cls(match["flag_id"], match["decision"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        cog: Reviewer | None = interaction.client.get_cog(FLAGS_COG)  # type: ignore[attr-defined]
        if cog is None:
            raise RuntimeError("the flags extension is not loaded")
        await cog.review(interaction, self.flag_id, approve=self.decision == "approve")


def review_view(flag_id: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(ReviewButton(flag_id, "approve"))
    view.add_item(ReviewButton(flag_id, "dismiss"))
    return view
