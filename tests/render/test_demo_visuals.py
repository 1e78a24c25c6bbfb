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
