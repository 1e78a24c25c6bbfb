"""Wider training families: drawn by the train-wide split only, new beside both the trained and
the held-out families, each its own look."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from inference_service.catalog.format import read_catalog
from lab.zoo.content import sample_content
from lab.zoo.held_out_ops import HELD_OUT_PRIMARIES
from lab.zoo.style_ops import PRIMARIES, _from_pil, apply_style, lookalike
from lab.zoo.style_zoo import read_zoo_info, zoo_styles
from lab.zoo.wide_ops import OPERATIONS, WIDE_PRIMARIES, sample_params
from tests.helpers.style_families import assert_families_have_their_own_looks


def test_wide_families_are_new_and_only_in_the_train_wide_split() -> None:
    assert len(WIDE_PRIMARIES) >= 4
    assert not set(WIDE_PRIMARIES) & set(PRIMARIES)
    assert not set(WIDE_PRIMARIES) & set(HELD_OUT_PRIMARIES)
    for split in ("train", "eval", "demo", "heldout-family"):
        drawn = {spec.primary for spec in zoo_styles(200, split, seed=1)}  # type: ignore[arg-type]
        assert not drawn & set(WIDE_PRIMARIES), split
    wide = {spec.primary for spec in zoo_styles(200, "train-wide", seed=1)}
    assert wide == set(PRIMARIES + WIDE_PRIMARIES)  # the ten trained families stay in


def test_each_wide_family_has_its_own_look_and_survives_a_lookalike() -> None:
    image = sample_content("train", np.random.default_rng(0), 64, scene_index=3).image
    assert_families_have_their_own_looks(WIDE_PRIMARIES, OPERATIONS, sample_params, _from_pil(image))
    # Lookalikes nudge every parameter (counts by one, floats by up to 20 %): still valid styles.
    for index, spec in enumerate(zoo_styles(60, "train-wide", seed=4)):
        if spec.primary in WIDE_PRIMARIES:
            near = lookalike(spec, index, np.random.default_rng(index), amount=0.5)
            out = np.asarray(apply_style(near, image, np.random.default_rng(0)))
            assert out.shape == (64, 64, 3)


def test_train_wide_zoo_is_a_training_catalog(tmp_path: Path) -> None:
    from findlora.commands import bench

    root = tmp_path / "wide"
    args = ["zoo", str(root), "--split", "train-wide", "--styles", "8", "--samples", "3", "--seed", "2"]
    result = CliRunner().invoke(bench.bench_app, [*args, "--size", "48", "--queries", "5"])
    assert result.exit_code == 0, result.output
    assert len(read_catalog(root).loras) == 8
    assert not (root / "queries").exists()  # training splits write no queries
    info = read_zoo_info(root)
    assert info["split"] == "train-wide"
    assert info["families"] == list(PRIMARIES + WIDE_PRIMARIES)
