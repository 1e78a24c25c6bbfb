"""The sheet and the HTML page of a real search: layout, pixels where they belong, escaping."""

from __future__ import annotations

import io
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from findlora.render import render_html, render_sheet, results_view, sheet_layout
from findlora.render.sheet import BACKGROUND, QUERY_PX, THUMB_PX
from tests.render.conftest import HOSTILE, HOSTILE_SLUG, TOP_K, SearchedCatalog

pytestmark = pytest.mark.db


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float64)


def difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute pixel difference after scaling `b` to `a`'s size (an independent resize)."""
    return float(
        np.abs(pixels(a) - pixels(b.convert("RGB").resize(a.size, Image.Resampling.BILINEAR))).mean()
    )


async def test_sheet_has_a_row_per_result_and_the_query_where_the_layout_says(
    searched: SearchedCatalog,
) -> None:
    view = results_view(searched.response, [("query.png", searched.query)])
    sheet = Image.open(io.BytesIO(render_sheet(view)))
    layout = sheet_layout(view)
    assert sheet.format == "PNG"
    assert (layout.n_rows, layout.n_thumbs) == (TOP_K, 3)  # transfers_per_match is 3
    assert sheet.size == (layout.width, layout.height)
    assert layout.height >= TOP_K * (THUMB_PX + 20)

    query = Image.open(io.BytesIO(searched.query))
    box = layout.query_box(0)
    assert box[2] - box[0] == QUERY_PX
    on_sheet = sheet.crop(box)
    other_style = Image.open(searched.reference("style-04"))
    assert difference(on_sheet, query) < 6
    assert difference(on_sheet, other_style) > 4 * difference(on_sheet, query)

    # Every row shows its transfers: each thumbnail box holds that transfer's picture.
    for row, match in enumerate(searched.response.matches):
        for j, transfer in enumerate(match.transfers):
            thumb = Image.open(io.BytesIO(transfer.thumbnail))
            cell = sheet.crop(layout.thumb_box(row, j))
            assert difference(cell, thumb) < 12, (row, j)
    # Rank and name text is drawn in ink, and nothing is drawn below the last row.
    top = layout.row_top(TOP_K - 1)
    rank_area = pixels(sheet.crop((layout.rows_x, top, layout.rows_x + 40, top + 28)))
    assert (rank_area.max(axis=2) < 100).sum() > 40
    below = pixels(sheet.crop((layout.rows_x, layout.row_top(TOP_K) + 4, layout.width, layout.height)))
    assert (below == np.array(BACKGROUND)).all()


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


async def test_html_escapes_hostile_names_links_and_trigger_words(searched: SearchedCatalog) -> None:
    assert searched.response.matches[0].slug == HOSTILE_SLUG  # the query is the hostile LoRA's own style
    page = render_html(results_view(searched.response, [("<q>.png", searched.query)]))
    parser = Tags()
    parser.feed(page)
    tags = parser.tags
    assert not [t for t, _ in tags if t in ("script", "iframe", "object", "embed", "link", "b")]
    assert not [a for _, attrs in tags for a in attrs if a.startswith("on")]
    hrefs = [attrs["href"] for t, attrs in tags if t == "a"]
    assert hrefs
    assert all(href and href.startswith("https://example.org/") for href in hrefs)
    sources = [attrs["src"] for t, attrs in tags if t == "img"]
    assert len(sources) == 1 + sum(len(m.transfers) for m in searched.response.matches)
    assert all(src and src.startswith("data:image/") for src in sources)
    # The hostile strings are there as text, escaped, not as markup.
    assert "&lt;script&gt;document.title=&quot;owned&quot;&lt;/script&gt; &amp; &lt;b&gt;" in page
    assert "javascript:document.title=&#x27;owned&#x27;" in page
    assert "&quot;&gt;&lt;img src=x onerror=&quot;document.title=1&quot;&gt;" in page
    assert HOSTILE.name not in page
    assert "<q>" not in page
    assert 'http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:' in page
