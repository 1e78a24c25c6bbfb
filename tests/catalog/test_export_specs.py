"""Export keeps the GMI part of a catalog: the platform prompt set, each LoRA's spec images and
own prompts, so that importing the export stores the same specs and re-embeds none."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from db import specs
from inference_service.catalog.exporter import export_catalog
from inference_service.catalog.format import read_catalog
from inference_service.catalog.importer import import_catalog
from inference_service.config import Settings
from inference_service.runtime import open_runtime
from tests.helpers.catalogs import apply_style, content_image, write_catalog
from tests.helpers.tiny_models import TINY_CLIP, save_tiny_clip

pytestmark = pytest.mark.db

PROMPTS = ["a portrait of a woman", "a cat on a sofa", "a city street at night"]


def write_spec_catalog(root: Path) -> Path:
    write_catalog(root, n_loras=3, n_samples=3)
    (root / "prompts.txt").write_text("\n".join(PROMPTS) + "\n", encoding="utf-8")
    rng = np.random.default_rng(3)
    # style-00: platform prompts only; style-01: its own prompts too (ids 3 and 4); style-02: none.
    for style, names in ((0, ["0-0", "0-1", "2-0"]), (1, ["1-0", "3-0", "4-0", "4-1"])):
        spec = root / "loras" / f"style-{style:02d}" / "spec"
        spec.mkdir()
        for name in names:
            apply_style(content_image(rng), style).save(spec / f"{name}.png")
    (root / "loras" / "style-01" / "spec" / "prompts.txt").write_text(
        "a tower in the rain\na bowl of fruit\n", encoding="utf-8"
    )
    return root


def gmi_part(root: Path) -> dict[str, object]:
    catalog = read_catalog(root)
    return {
        "prompts": catalog.prompts,
        "loras": {
            slug: (entry.own_prompts, sorted((s.prompt_id, s.n, s.path.read_bytes()) for s in entry.spec))
            for slug, entry in catalog.loras.items()
        },
    }


async def test_export_keeps_prompts_and_specs_and_reimport_embeds_none(
    settings: Settings, tmp_path: Path
) -> None:
    config_dir, checkpoint = save_tiny_clip(tmp_path / "clip")
    settings = settings.model_copy(
        update={
            "gmi": True,
            "clip_model": TINY_CLIP,
            "clip_pretrained": str(checkpoint),
            "clip_config_dir": config_dir,
            "captioner": "",
        }
    )
    original = write_spec_catalog(tmp_path / "catalog")
    runtime = await open_runtime(settings)
    try:
        assert runtime.gmi is not None
        report = await import_catalog(original, runtime.db, runtime.blobs, runtime.embedder, gmi=runtime.gmi)
        assert report.specs == 2
        stored = await runtime.db.run(specs.load_specs)
        await export_catalog(runtime.db, runtime.blobs, tmp_path / "exported")
        assert gmi_part(tmp_path / "exported") == gmi_part(original)
        again = await import_catalog(
            tmp_path / "exported", runtime.db, runtime.blobs, runtime.embedder, gmi=runtime.gmi
        )
        assert (again.imported, again.updated, again.specs) == ([], [], 0)
        after = await runtime.db.run(specs.load_specs)
    finally:
        await runtime.close()
    assert after.keys() == stored.keys()
    for lora_id, spec in stored.items():
        assert after[lora_id].prompt_ids == spec.prompt_ids
        np.testing.assert_array_equal(after[lora_id].image_features, spec.image_features)
