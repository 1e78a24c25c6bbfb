"""`findlora search --sheet/--html`, run as a user runs it, against a real service."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from inference_service.config import Settings
from tests.render.conftest import TOP_K, SearchedCatalog
from tests.test_cli import cli_env, findlora

pytestmark = pytest.mark.db


async def test_search_writes_the_sheet_and_the_page(
    searched: SearchedCatalog, settings: Settings, tmp_path: Path
) -> None:
    query = searched.reference("style-04", "s02")
    sheet, page = tmp_path / "out.png", tmp_path / "out.html"
    env = cli_env(settings, FINDLORA_TOKEN=searched.token)
    args = ("--top-k", str(TOP_K), "--service", searched.address, "--sheet", str(sheet), "--html", str(page))
    code, out, err = await findlora("search", str(query), *args, env=env)
    assert code == 0, err
    assert f"sheet: {sheet}" in out
    assert f"page: {page}" in out
    with Image.open(sheet) as image:
        assert image.format == "PNG"
        assert image.height > TOP_K * 180
    html = page.read_text()
    assert html.count('<li class="result"') == TOP_K
    assert "Style 4" in html  # the query's own LoRA is among the results
    assert f"LoRAs ranked for {query.name}" in html


@pytest.mark.parametrize("option", ["--sheet", "--html"])
async def test_unwritable_output_fails_before_searching(
    option: str, settings: Settings, tmp_path: Path
) -> None:
    query = tmp_path / "q.png"
    Image.new("RGB", (32, 32), "red").save(query)
    not_a_dir = tmp_path / "file.txt"
    not_a_dir.write_text("x")
    env = cli_env(settings)
    # No service at 127.0.0.1:9: reaching the search at all would fail with a different message.
    code, out, err = await findlora(
        "search", str(query), "--service", "127.0.0.1:9", option, str(not_a_dir / "out"), env=env
    )
    assert code == 1
    assert f"{option} {not_a_dir / 'out'}: the directory {not_a_dir} does not exist" in err
    assert "Traceback" not in out + err
    code, out, err = await findlora(
        "search", str(query), "--service", "127.0.0.1:9", option, str(tmp_path), env=env
    )
    assert code == 1
    assert f"{option} {tmp_path} is a directory; give a file name" in err
