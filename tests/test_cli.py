"""The `findlora` command line, run as a user runs it (a subprocess), against a real service."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from inference_service.config import Settings
from inference_service.server import start_service
from tests.helpers.catalogs import write_catalog

pytestmark = pytest.mark.db
FINDLORA = [sys.executable, "-m", "findlora"]


def cli_env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "FINDLORA_DATA_DIR": str(settings.data_dir),
        "DATABASE_URL": str(settings.database_url),
        "FINDLORA_TORCH_THREADS": "1",
        "COLUMNS": "200",
    }


async def findlora(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *FINDLORA, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_import_then_search_json(tmp_path: Path, settings: Settings) -> None:
    catalog = write_catalog(tmp_path / "catalog", n_loras=20, n_samples=10)
    env = cli_env(settings)
    code, out, err = await findlora("catalog", "import", str(catalog), env=env)
    assert code == 0, err
    assert "imported 20, updated 0, unchanged 0 LoRA(s); 200 reference(s)" in out
    code, out, _ = await findlora("catalog", "import", str(catalog), env=env)
    assert code == 0
    assert "imported 0, updated 0, unchanged 20" in out

    service = await start_service(settings, "127.0.0.1:0")
    try:
        query = catalog / "loras" / "style-12" / "references" / "s04.png"
        code, out, err = await findlora(
            "search",
            str(query),
            "--json",
            "--top-k",
            "3",
            "--service",
            f"127.0.0.1:{service.port}",
            "--transfers-dir",
            str(tmp_path / "thumbs"),
            env=env,
        )
    finally:
        await service.stop(0.5)
    assert code == 0, err
    result = json.loads(out)
    assert set(result) == {"search_id", "pseudo_prompt", "results"}
    assert len(result["results"]) == 3
    first = result["results"][0]
    assert set(first) == {
        "rank",
        "slug",
        "name",
        "url",
        "score",
        "style_distance",
        "rkme_score",
        "suggested_prompt",
        "transfers",
    }
    assert first["rkme_score"] is None
    assert first["transfers"][0]["sample_id"] == "s04" or first["slug"] != "style-12"
    for match in result["results"]:
        for transfer in match["transfers"]:
            assert set(transfer) == {"sample_id", "path_or_key"}
            assert Path(transfer["path_or_key"]).is_file()


async def test_search_against_a_down_service_names_the_address(tmp_path: Path, settings: Settings) -> None:
    image = tmp_path / "q.png"
    image.write_bytes(b"whatever")
    code, out, err = await findlora("search", str(image), "--service", "127.0.0.1:9", env=cli_env(settings))
    assert code == 1
    assert "could not reach the findlora service at 127.0.0.1:9" in err
    assert "Traceback" not in err + out


async def test_bad_catalog_reports_every_problem_and_exits_1(tmp_path: Path, settings: Settings) -> None:
    catalog = write_catalog(tmp_path / "catalog", n_loras=2, n_samples=2)
    (catalog / "loras" / "style-01" / "lora.toml").write_text("name = ")
    (catalog / "samples" / "s01.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    code, out, err = await findlora("catalog", "import", str(catalog), env=cli_env(settings))
    assert code == 1
    assert "style-01/lora.toml: invalid TOML" in err
    assert "samples/s01.png is not a readable image: corrupt" in err
    assert "Traceback" not in err + out


async def test_missing_image_file(tmp_path: Path, settings: Settings) -> None:
    code, _, err = await findlora("search", str(tmp_path / "nope.png"), env=cli_env(settings))
    assert code == 1
    assert "cannot read" in err
    assert "nope.png" in err
