"""End to end through the real gRPC service with tiny random CLIP + BLIP loaded from disk:
spec import (idempotent), pseudo-prompt, both component scores, fused score, --prompt override."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from PIL import Image

from bot.core.client import FindLoraClient, QueryImage
from inference_service.catalog.importer import import_catalog
from inference_service.config import Settings
from inference_service.models.captioner import BlipCaptioner
from inference_service.runtime import open_runtime
from inference_service.scoring.fusion import fuse
from inference_service.server import start_service
from tests.helpers.catalogs import apply_style, content_image, write_catalog
from tests.helpers.tiny_models import TINY_CLIP, save_tiny_blip, save_tiny_clip

pytestmark = pytest.mark.db

SPEC_PROMPTS = (0, 6, 14)  # platform prompt ids (default set): a portrait, a cat, a city street
NO_SPEC = "style-19"


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("tiny-models")
    config_dir, checkpoint = save_tiny_clip(root)
    return config_dir, checkpoint, save_tiny_blip(root / "blip")


@pytest.fixture
def gmi_settings(settings: Settings, tiny_models: tuple[Path, Path, Path]) -> Settings:
    config_dir, checkpoint, blip = tiny_models
    return settings.model_copy(
        update={
            "gmi": True,
            "clip_model": TINY_CLIP,
            "clip_pretrained": str(checkpoint),
            "clip_config_dir": config_dir,
            "captioner": str(blip),
            "caption_max_tokens": 6,
        }
    )


def write_gmi_catalog(root: Path) -> Path:
    write_catalog(root, n_loras=20, n_samples=6)
    import numpy as np

    rng = np.random.default_rng(7)
    for style in range(19):  # style-19 has no spec: it must still rank
        spec_dir = root / "loras" / f"style-{style:02d}" / "spec"
        spec_dir.mkdir()
        for prompt_id in SPEC_PROMPTS:
            for n in range(2):
                apply_style(content_image(rng), style).save(spec_dir / f"{prompt_id}-{n}.png")
    return root


async def test_search_fuses_style_distance_and_weighted_rkme(gmi_settings: Settings, tmp_path: Path) -> None:
    catalog = write_gmi_catalog(tmp_path / "catalog")
    runtime = await open_runtime(gmi_settings)
    try:
        assert runtime.gmi is not None
        report = await import_catalog(catalog, runtime.repo, runtime.blobs, runtime.embedder, gmi=runtime.gmi)
        assert (len(report.imported), report.specs) == (20, 19)
        again = await import_catalog(catalog, runtime.repo, runtime.blobs, runtime.embedder, gmi=runtime.gmi)
        assert (len(again.unchanged), again.specs) == (20, 0)
        assert len(await runtime.repo.platform_prompts()) == 55
        specs = await runtime.repo.load_specs()
        assert len(specs) == 19
        assert sorted(set(specs[min(specs)].prompt_ids)) == list(SPEC_PROMPTS)
    finally:
        await runtime.close()

    query_path = catalog / "loras" / "style-03" / "spec" / "6-0.png"
    expected_caption = BlipCaptioner(str(gmi_settings.captioner), max_new_tokens=6).caption(
        [Image.open(query_path).convert("RGB")]
    )[0]
    service = await start_service(gmi_settings, "127.0.0.1:0")
    try:
        async with FindLoraClient(f"127.0.0.1:{service.port}", timeout=30) as client:
            query = [QueryImage(query_path.read_bytes(), "q.png")]
            response = await client.search(query, top_k=20)
            assert response.pseudo_prompt == expected_caption
            matches = {m.slug: m for m in response.matches}
            assert len(matches) == 20
            assert not matches[NO_SPEC].HasField("rkme_score")
            assert all(m.HasField("rkme_score") for s, m in matches.items() if s != NO_SPEC)
            scores = [m.score for m in response.matches]
            assert scores == sorted(scores)
            # The fused score is exactly fuse() of the two returned components.
            d = {m.lora_id: m.style_distance for m in response.matches}
            r = {m.lora_id: m.rkme_score for m in response.matches if m.HasField("rkme_score")}
            fused = fuse(d, r, gmi_settings.fusion_alpha, "rank")
            for m in response.matches:
                assert m.score == pytest.approx(fused[m.lora_id])
                assert not math.isnan(m.style_distance)
            assert matches[
                "style-03"
            ].suggested_prompt == f"{expected_caption}, trig3, <lora:style-03:0.8>".lstrip(", ")

            override = await client.search(query, top_k=20, prompt="a cat sleeping on a windowsill")
            assert override.pseudo_prompt == "a cat sleeping on a windowsill"
            assert matches["style-03"].style_distance == pytest.approx(
                next(m.style_distance for m in override.matches if m.slug == "style-03")
            )
            before = {m.slug: m.rkme_score for m in response.matches if m.HasField("rkme_score")}
            after = {m.slug: m.rkme_score for m in override.matches if m.HasField("rkme_score")}
            assert before.keys() == after.keys()
            assert any(abs(before[s] - after[s]) > 1e-9 for s in before)  # the weights moved

            page = await client.get_page(response.search_id, offset=5, limit=5)
            assert [m.slug for m in page.matches] == [m.slug for m in response.matches[5:10]]
            assert page.matches[0].rkme_score == pytest.approx(response.matches[5].rkme_score)
    finally:
        await service.stop(0.5)
