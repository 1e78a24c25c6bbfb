"""The HTML page of a real search, opened in a real headless Chromium (Debian's `chromium`)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from findlora.render import render_html, results_view
from tests.render.conftest import HOSTILE, HOSTILE_SLUG, TOP_K, SearchedCatalog

aiohttp = pytest.importorskip("aiohttp", reason="the DevTools client needs aiohttp (the bot extra)")
from tests.helpers.browser import INSTALL_HINT, find_chromium, load_page  # noqa: E402

pytestmark = pytest.mark.db

PROBE = """(() => {
  const query = document.getElementById("query-0");
  const box = query && query.getBoundingClientRect();
  return {
    title: document.title,
    scripts: document.scripts.length,
    query: box && {x: box.x, y: box.y, width: box.width, height: box.height},
    images: [...document.images].map(i => ({kind: i.className, complete: i.complete, width: i.naturalWidth})),
    rows: [...document.querySelectorAll("li.result")].map(li => ({
      rank: Number(li.dataset.rank),
      name: li.querySelector(".name").textContent,
      links: [...li.querySelectorAll("a")].map(a => a.href),
      transfers: li.querySelectorAll("img.transfer").length,
      triggers: [...li.querySelectorAll("code")].map(c => c.textContent),
    })),
  };
})()"""


def difference(a: Image.Image, b: Image.Image) -> float:
    resized = b.convert("RGB").resize(a.size, Image.Resampling.BILINEAR)
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(resized, dtype=np.float64)).mean())


@pytest.fixture
def chromium_binary() -> str:
    binary = find_chromium()
    if binary is None:
        pytest.skip(INSTALL_HINT)
    return binary


async def test_page_opens_in_chromium_with_every_result_and_picture(
    chromium_binary: str, searched: SearchedCatalog, tmp_path: Path
) -> None:
    page = tmp_path / "results.html"
    page.write_text(render_html(results_view(searched.response, [("query.png", searched.query)])))

    report = await load_page(chromium_binary, page, PROBE, width=1400, height=1100)

    assert report.errors == []
    facts = report.facts
    assert facts["title"] == "findlora · LoRAs ranked for query.png"  # no injected script retitled it
    assert facts["scripts"] == 0
    matches = searched.response.matches
    assert [(r["rank"], r["name"]) for r in facts["rows"]] == [(m.rank, m.name) for m in matches]
    assert len(facts["rows"]) == TOP_K
    for row, match in zip(facts["rows"], matches, strict=True):
        assert row["transfers"] == len(match.transfers) > 0
        if match.slug == HOSTILE_SLUG:
            assert row["name"] == HOSTILE.name  # shown as text, exactly
            assert row["links"] == []
            assert row["triggers"] == HOSTILE.trigger_words
        else:
            assert row["links"] == [match.url, match.url]
    assert facts["images"][0]["kind"] == "query-image"
    assert len(facts["images"]) == 1 + sum(len(m.transfers) for m in matches)
    assert all(image["complete"] and image["width"] > 0 for image in facts["images"]), facts["images"]

    shot = report.screenshot
    assert shot is not None
    assert shot.size == (1400, 1100)
    assert np.asarray(shot, dtype=np.float64).std() > 20  # not a blank page
    box = facts["query"]
    assert box["width"] == 256
    assert box["height"] == 256
    left, top = round(box["x"]), round(box["y"])
    on_screen = shot.crop((left, top, left + 256, top + 256))
    query = Image.open(io.BytesIO(searched.query))
    other_style = Image.open(searched.reference("style-04"))
    assert difference(on_screen, query) < 8
    assert difference(on_screen, other_style) > 4 * difference(on_screen, query)
