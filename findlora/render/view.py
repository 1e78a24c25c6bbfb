"""What a visual result shows, taken from a SearchResponse: the query images and, per ranked LoRA,
its catalog fields, scores and nearest sample transfers (the same data the bots render)."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from PIL import Image

QUERY_PX = 512  # queries are re-encoded to this bound: a report should not carry a 20 MB original
MAX_TRANSFERS = 4
BROWSER_IMAGE_TYPES = frozenset({"image/webp", "image/png", "image/jpeg", "image/gif"})


@dataclass(frozen=True)
class Picture:
    """An image every browser decodes, with its decoded pixels for the sheet."""

    data: bytes
    mime_type: str
    image: Image.Image


@dataclass(frozen=True)
class Transfer:
    sample_id: str
    distance: float
    picture: Picture


@dataclass(frozen=True)
class Row:
    rank: int
    slug: str
    name: str
    url: str
    base_model: str
    score: float
    style_distance: float
    rkme_score: float | None
    trigger_words: tuple[str, ...]
    suggested_prompt: str
    transfers: tuple[Transfer, ...]

    @property
    def safe_url(self) -> str | None:
        """The link when it is http(s) with a host; anything else (javascript:, data:) is text only."""
        url = self.url.strip()
        try:
            parts = urlsplit(url)
        except ValueError:
            return None
        return url if parts.scheme.lower() in ("http", "https") and parts.netloc else None

    @property
    def score_lines(self) -> tuple[str, ...]:
        # NaN: a LoRA found by its spec alone, with no kept reference to measure a distance to
        known = not math.isnan(self.style_distance)
        lines = [f"style distance {self.style_distance:.4f}" if known else "no style distance (no refs)"]
        if self.rkme_score is not None:
            lines.append(f"RKME {self.rkme_score:.4f}")
            lines.append(f"fused score {self.score:.4f}")
        elif not known or abs(self.score - self.style_distance) > 1e-9:
            lines.append(f"score {self.score:.4f}")
        return tuple(lines)


@dataclass(frozen=True)
class QueryPicture:
    name: str
    picture: Picture | None  # None when this machine cannot decode the file the service accepted


@dataclass(frozen=True)
class ResultsView:
    title: str
    search_id: str
    pseudo_prompt: str
    queries: tuple[QueryPicture, ...]
    rows: tuple[Row, ...]


def decode_picture(data: bytes, mime_type: str = "", max_px: int | None = None) -> Picture | None:
    """Decoded pixels plus bytes a browser shows; re-encoded (WebP) when the type is not one every
    browser decodes or the image is larger than `max_px`. None when PIL cannot read it."""
    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.load()
            image = opened.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    too_big = max_px is not None and max(image.size) > max_px
    if mime_type in BROWSER_IMAGE_TYPES and not too_big:
        return Picture(data, mime_type, image)
    if too_big and max_px is not None:
        image.thumbnail((max_px, max_px), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, format="WEBP", quality=90)
    return Picture(out.getvalue(), "image/webp", image)


def _row(match: Any) -> Row:
    transfers = []
    for t in match.transfers:
        picture = decode_picture(t.thumbnail, t.mime_type) if t.thumbnail else None
        if picture is not None:  # one unreadable thumbnail must not cost the others
            transfers.append(Transfer(t.sample_id, t.distance, picture))
    return Row(
        rank=match.rank,
        slug=match.slug,
        name=match.name or match.slug,
        url=match.url,
        base_model=match.base_model,
        score=match.score,
        style_distance=match.style_distance,
        rkme_score=match.rkme_score if match.HasField("rkme_score") else None,
        trigger_words=tuple(match.trigger_words),
        suggested_prompt=match.suggested_prompt,
        transfers=tuple(transfers[:MAX_TRANSFERS]),
    )


def results_view(response: Any, queries: Sequence[tuple[str, bytes]], title: str = "") -> ResultsView:
    """`response` is a findlora SearchResponse; `queries` the (file name, bytes) that were sent."""
    names = ", ".join(name for name, _ in queries)
    return ResultsView(
        title=title or f"LoRAs ranked for {names}",
        search_id=response.search_id,
        pseudo_prompt=response.pseudo_prompt,
        queries=tuple(QueryPicture(name, decode_picture(data, "", QUERY_PX)) for name, data in queries),
        rows=tuple(_row(m) for m in response.matches),
    )
