"""Paging state that survives a bot restart: it lives in the service (the stored ranking), and
the bot recovers the search id and window from its own message (embed footer, component ids)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_FOOTER_REF = re.compile(rf"ref ({_UUID}):(\d+):(\d+)")


@dataclass(frozen=True)
class PageRef:
    """One window of a stored ranking: results offset .. offset + limit - 1 (0-based)."""

    search_id: str
    offset: int
    limit: int

    def encode(self) -> str:
        return f"{self.search_id}:{self.offset}:{self.limit}"

    def next(self, total: int) -> PageRef | None:
        offset = self.offset + self.limit
        return PageRef(self.search_id, offset, self.limit) if offset < total else None

    def previous(self) -> PageRef | None:
        if self.offset == 0:
            return None
        return PageRef(self.search_id, max(0, self.offset - self.limit), self.limit)


def footer_text(ref: PageRef, total: int) -> str:
    last = min(ref.offset + ref.limit, total)
    shown = f"results {ref.offset + 1}–{last} of {total}" if total else "no results"
    return f"findlora · {shown} · ref {ref.encode()}"


def parse_footer(text: str | None) -> PageRef | None:
    match = _FOOTER_REF.search(text or "")
    if match is None:
        return None
    return PageRef(match.group(1), int(match.group(2)), int(match.group(3)))


def ref_pattern() -> str:
    """The regex of an encoded ref with named groups, for component custom ids."""
    return rf"(?P<search_id>{_UUID}):(?P<offset>\d+):(?P<limit>\d+)"


_FOOTER_LORA = re.compile(r"· lora (\d+)\b")
_FOOTER_TOTAL = re.compile(r"results \d+–\d+ of (\d+)")


def parse_total(text: str | None) -> int:
    """The length of the stored ranking, as the footer shows it (0 when absent)."""
    match = _FOOTER_TOTAL.search(text or "")
    return int(match.group(1)) if match else 0


def result_footer(ref: PageRef, total: int, lora_id: int) -> str:
    """The footer of one result: the page ref plus the LoRA it shows (for reaction votes)."""
    return f"{footer_text(ref, total)} · lora {lora_id}"


def parse_lora_id(text: str | None) -> int | None:
    match = _FOOTER_LORA.search(text or "")
    return int(match.group(1)) if match else None
