"""`findlora demo` (what `make demo` runs) writes the results sheet and page and prints their paths."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image

from db.clients import Role
from db.database import Database
from inference_service.config import Settings
from tests.helpers.service import issue_token_in
from tests.test_cli import cli_env, findlora

pytestmark = pytest.mark.db


async def test_demo_writes_and_names_the_sheet_and_the_page(settings: Settings, db: Database) -> None:
    async with db.connection() as conn:  # DATABASE_URL is set: the demo searches with FINDLORA_TOKEN
        token = await issue_token_in(conn, Role.SEARCH)
    code, out, err = await findlora("demo", env=cli_env(settings, FINDLORA_TOKEN=token))
    assert code == 0, err
    assert "the LoRA that made the query, 'demo-0000-sketch', is at rank" in out
    printed = dict(re.findall(r"^results (sheet|page): +(\S+)$", out, flags=re.MULTILINE))
    sheet, page = Path(printed["sheet"]), Path(printed["page"])
    assert (sheet.parent, sheet.suffix, page.suffix) == (settings.data_dir / "demo-results", ".png", ".html")
    with Image.open(sheet) as image:
        assert image.format == "PNG"
        assert image.height > 5 * 180  # five ranked rows
    html = page.read_text()
    assert html.count('<li class="result"') == 5
    assert html.count("<img ") == 1 + 5 * 3  # the query and three transfers per LoRA
    assert "LoRAs ranked for q000.png" in html


async def test_the_demo_keeps_an_encoder_that_catalog_adapt_activated(
    settings: Settings, db: Database
) -> None:
    """`make demo` on a data directory whose catalog was adapted searches with the adapted encoder;
    it re-embedded the catalog back to the shipped one before."""
    import copy

    import torch

    from inference_service.catalog.encoders import activate
    from inference_service.models.style_encoder import StyleEmbedder, encoder_fingerprint
    from inference_service.runtime import open_runtime

    async with db.connection() as conn:
        token = await issue_token_in(conn, Role.SEARCH)
    env = cli_env(settings, FINDLORA_TOKEN=token)
    code, _, err = await findlora("demo", env=env)
    assert code == 0, err
    async with await open_runtime(settings) as runtime:  # what a kept `catalog adapt` leaves
        shipped = await runtime.encoders.current()
        model = copy.deepcopy(shipped.model)
        with torch.no_grad():
            next(model.parameters()).add_(0.01)
        adapted = StyleEmbedder(model, f"adapted@{encoder_fingerprint(model)}")
        await activate(
            runtime.db, runtime.blobs, adapted, current=shipped, note="test", actor="catalog adapt"
        )
    code, out, err = await findlora("demo", env=env)
    assert code == 0, err
    assert "style encoder changed" not in out
    async with db.connection() as conn:
        cur = await conn.execute("SELECT value FROM catalog_meta WHERE key = 'style_encoder'")
        assert await cur.fetchone() == (adapted.label,)
