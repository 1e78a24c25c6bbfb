"""Search results as a neutral structure each chat adapter turns into its own widgets."""

from __future__ import annotations

import io
import mimetypes
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

from bot.core.paging import PageRef, footer_text
from protos import findlora_pb2 as pb

MAX_PROMPT_CHARS = 300


@dataclass(frozen=True)
class TransferImage:
    """One sample transfer: a reference image of the LoRA near the query's style."""

    sample_id: str
    filename: str
    data: bytes
    mime_type: str
    distance: float


@dataclass(frozen=True)
class ResultCard:
    rank: int
    lora_id: int
    slug: str
    title: str
    url: str
    base_model: str
    score: float
    style_distance: float
    suggested_prompt: str
    trigger_words: tuple[str, ...]
    nsfw: bool
    transfers: tuple[TransferImage, ...]

    @property
    def score_text(self) -> str:
        return f"{self.score:.3f} (style distance {self.style_distance:.3f}; lower is closer)"


REMOVED_PAGE = "The results on this page were removed by moderators since the search."


@dataclass(frozen=True)
class ResultsPage:
    ref: PageRef
    total: int
    pseudo_prompt: str
    cards: tuple[ResultCard, ...]

    @property
    def footer(self) -> str:
        return footer_text(self.ref, self.total)

    @property
    def has_next(self) -> bool:
        return self.ref.next(self.total) is not None


def clip(text: str, limit: int = MAX_PROMPT_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _transfer(match: pb.Match, transfer: pb.SampleTransfer) -> TransferImage:
    suffix = mimetypes.guess_extension(transfer.mime_type) or ".webp"
    return TransferImage(
        sample_id=transfer.sample_id,
        filename=f"{match.rank:02d}-{match.slug}-{transfer.sample_id}{suffix}",
        data=transfer.thumbnail,
        mime_type=transfer.mime_type,
        distance=transfer.distance,
    )


def render_page(response: pb.SearchResponse, limit: int, *, allow_nsfw: bool) -> ResultsPage:
    """The page of a Search or GetPage answer. NSFW results are dropped again here when the
    place does not allow them: the service filters too, this is defence in depth."""
    cards = tuple(
        ResultCard(
            rank=m.rank,
            lora_id=m.lora_id,
            slug=m.slug,
            title=m.name or m.slug,
            url=m.url,
            base_model=m.base_model,
            score=m.score,
            style_distance=m.style_distance,
            suggested_prompt=clip(m.suggested_prompt),
            trigger_words=tuple(m.trigger_words),
            nsfw=m.nsfw,
            transfers=tuple(_transfer(m, t) for t in m.transfers if t.thumbnail),
        )
        for m in response.matches
        if allow_nsfw or not m.nsfw
    )
    return ResultsPage(
        ref=PageRef(response.search_id, response.offset, limit),
        total=response.total,
        pseudo_prompt=clip(response.pseudo_prompt),
        cards=cards,
    )


def contact_sheet(transfers: Sequence[TransferImage], height: int = 160, gap: int = 4) -> bytes | None:
    """The transfers side by side in one WebP: chat platforms cap files per message, so one
    image per result keeps every result's transfers visible."""
    images = []
    for transfer in transfers:
        try:
            with Image.open(io.BytesIO(transfer.data)) as opened:
                image = opened.convert("RGB")
        except (OSError, ValueError):
            continue  # one unreadable thumbnail must not cost the others
        width = max(1, round(image.width * height / max(1, image.height)))
        images.append(image.resize((width, height), Image.Resampling.LANCZOS))
    if not images:
        return None
    sheet = Image.new("RGB", (sum(i.width for i in images) + gap * (len(images) - 1), height), "white")
    x = 0
    for image in images:
        sheet.paste(image, (x, 0))
        x += image.width + gap
    out = io.BytesIO()
    sheet.save(out, format="WEBP", quality=85)
    return out.getvalue()
