"""Multi-image queries in the GMI branch: each image a query point, captions combined."""

from __future__ import annotations

import numpy as np
import pytest

from db.rows import LoraSpec
from inference_service.gmi import combine_prompts, score_specs
from inference_service.scoring.rkme import Spec, rkme_clip, weighted_rkme


def spec(seed: int) -> LoraSpec:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(6, 8))
    e = rng.normal(size=(6, 5))
    return LoraSpec(seed, z / np.linalg.norm(z, axis=1, keepdims=True), e, list(range(6)))


@pytest.mark.parametrize("method", ["weighted", "uniform", "reduced"])
def test_score_is_the_mean_of_single_image_scores(method: str) -> None:
    specs = {1: spec(1), 2: spec(2)}
    rng = np.random.default_rng(9)
    queries = rng.normal(size=(3, 8))
    text = rng.normal(size=5)
    together = score_specs(specs, queries, text, 0.7, method)  # type: ignore[arg-type]
    for lora_id in specs:
        alone = [score_specs(specs, q[None, :], text, 0.7, method)[lora_id] for q in queries]  # type: ignore[arg-type]
        assert together[lora_id] == pytest.approx(float(np.mean(alone)))


def test_single_image_scores_are_the_formula() -> None:
    stored = spec(3)
    raw = Spec(stored.image_features, stored.prompt_features)
    query = np.random.default_rng(4).normal(size=(1, 8))
    text = np.ones(5)
    assert score_specs({3: stored}, query, text, 0.5, "weighted")[3] == pytest.approx(
        weighted_rkme(raw, query, text, 0.5)
    )
    assert score_specs({3: stored}, query, None, 0.5, "uniform")[3] == pytest.approx(
        rkme_clip(raw, query, 0.5)
    )


def test_captions_are_combined_without_repeats() -> None:
    assert combine_prompts(["a cat", "A cat ", "", "a city street"]) == "a cat; a city street"
    assert combine_prompts([]) == ""
