"""The filters of every ranking query (base model, NSFW, searchable status), written once.

A query puts LORA_FILTER (over `loras l`) or SUMMARY_FILTER (over lora_style_summary, whose
searchable/base_model/nsfw columns a trigger copies from loras) in its WHERE clause and
passes Filters.params() with its own parameters. A base-model filter matches its family's
compatibility group (findlora_client.base_models), so "illustrious" also finds NoobAI LoRAs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from findlora_client.base_models import filter_group


@dataclass(frozen=True)
class Filters:
    base_model: str = ""  # '' : every base model; any spelling: its compatibility group
    allow_nsfw: bool = False

    def params(self) -> dict[str, Any]:
        group = filter_group(self.base_model)
        return {"bases": list(group.ids), "other_bases": group.others, "nsfw": self.allow_nsfw}


def _matching(prefix: str) -> str:
    column = f"{prefix}base_model"
    bases = (
        f"(cardinality(%(bases)s::text[]) = 0 OR {column} = ANY(%(bases)s::text[])"
        f" OR (%(other_bases)s AND {column} LIKE 'other:%%'))"
    )
    return f"{bases} AND (%(nsfw)s OR NOT {prefix}nsfw)"


LORA_FILTER = "l.status = 'active' AND " + _matching("l.")
SUMMARY_FILTER = "searchable AND " + _matching("")
