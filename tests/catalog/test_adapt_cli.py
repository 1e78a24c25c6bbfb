"""`findlora catalog adapt` end to end as an operator runs it (a subprocess), on tiny catalogs
and a tiny configured encoder: kept and activated, rolled back, refused."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from inference_service.config import Settings
from inference_service.models.style_encoder import save_encoder
from lab.zoo.style_zoo import generate_zoo
from tests.helpers.catalogs import write_catalog
from tests.helpers.encoders import tiny_embedder
from tests.test_cli import cli_env, findlora

pytestmark = pytest.mark.db


def active(settings: Settings) -> str:
    with psycopg.connect(str(settings.database_url)) as conn:
        row = conn.execute("SELECT value FROM catalog_meta WHERE key = 'style_encoder'").fetchone()
    assert row is not None
    return str(row[0])


def tiny_env(settings: Settings, tmp_path: Path) -> tuple[dict[str, str], str]:
    tiny = tiny_embedder()
    path = tmp_path / "tiny.safetensors"
    save_encoder(tiny.model, path)
    return cli_env(settings, FINDLORA_STYLE_ENCODER=str(path)), f"tiny.safetensors@{tiny.label.split('@')[1]}"


async def test_adapt_keeps_activates_and_rolls_back(settings: Settings, tmp_path: Path) -> None:
    env, label = tiny_env(settings, tmp_path)
    # Procedural styles the untrained tiny encoder ranks only part-way right.
    zoo = generate_zoo(
        tmp_path / "zoo", n_styles=12, n_samples=8, split="train", seed=2, progress=False, size=48
    )
    code, out, err = await findlora("catalog", "import", str(zoo), env=env)
    assert code == 0, err
    assert active(settings) == label

    report = tmp_path / "out" / "adapt.json"
    code, out, err = await findlora("catalog", "adapt", "--max-steps", "30", "--json", str(report), env=env)
    assert code == 0, err
    outcome = json.loads(report.read_text())
    assert outcome["kept"] is True
    assert outcome["after"] > outcome["before"] + 0.01
    assert outcome["previous"] == label
    adapted = outcome["activated"]
    assert adapted.startswith("adapted@")
    assert outcome["references"] == 96
    assert active(settings) == adapted
    assert f"{outcome['before']:.3f}" in out
    assert f"{outcome['after']:.3f}" in out
    assert "kept: validation MRR" in out
    assert f"activated {adapted} (was {label})" in out
    with psycopg.connect(str(settings.database_url)) as conn:
        parent, metrics = conn.execute(
            "SELECT parent, metrics FROM style_encoders WHERE label = %s", (adapted,)
        ).fetchone() or (None, None)
    assert parent == label
    assert metrics["after"] == pytest.approx(outcome["after"])
    assert not list((settings.data_dir / "adapt").glob("adapt-*"))  # activated: nothing left to resume

    code, out, err = await findlora("catalog", "adapt", "--rollback", env=env)
    assert code == 0, err
    assert f"rolled back to {label} (from {adapted})" in out
    assert "automatic adaptation is paused until `findlora catalog adapt` runs by hand" in out
    assert active(settings) == label
    code, out, err = await findlora("catalog", "adapt", "--rollback", env=env)
    assert code == 1
    assert f"the active encoder {label} has no previous encoder to roll back to" in err


async def test_adapt_refuses_when_validation_does_not_improve(settings: Settings, tmp_path: Path) -> None:
    env, label = tiny_env(settings, tmp_path)
    # Every LoRA restyles each sample identically: no encoder can tell them apart.
    catalog = write_catalog(tmp_path / "catalog", n_loras=6, n_samples=6, shared_style=3)
    code, _, err = await findlora("catalog", "import", str(catalog), env=env)
    assert code == 0, err
    report = tmp_path / "adapt.json"
    code, out, err = await findlora("catalog", "adapt", "--max-steps", "5", "--json", str(report), env=env)
    assert code == 0, err
    outcome = json.loads(report.read_text())
    assert (outcome["kept"], outcome["activated"]) == (False, None)
    assert "refused: validation MRR" in out
    assert active(settings) == label
    with psycopg.connect(str(settings.database_url)) as conn:
        assert conn.execute("SELECT count(*) FROM style_encoders").fetchone() == (0,)
