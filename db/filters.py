"""The filters of every ranking query (base model, NSFW, searchable status), written once.

A query puts LORA_FILTER (over `loras l`) or SUMMARY_FILTER (over lora_style_summary, whose
searchable/base_model/nsfw columns a trigger copies from loras) in its WHERE clause and
passes Filters.params() with its own parameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Filters:
    base_model: str = ""  # '' : every base model
    allow_nsfw: bool = False

    def params(self) -> dict[str, Any]:
        return {"base": self.base_model, "nsfw": self.allow_nsfw}


def _matching(prefix: str) -> str:
    return f"(%(base)s = '' OR {prefix}base_model = %(base)s) AND (%(nsfw)s OR NOT {prefix}nsfw)"


LORA_FILTER = "l.status = 'active' AND " + _matching("l.")
SUMMARY_FILTER = "searchable AND " + _matching("")
