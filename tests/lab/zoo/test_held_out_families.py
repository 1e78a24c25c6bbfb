"""Held-out style families: never drawn by the train/eval splits, the only families of the
heldout-family split, and existing zoos unchanged by their arrival."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from inference_service.catalog.format import read_catalog
from lab.zoo.content import sample_content
from lab.zoo.held_out_ops import HELD_OUT_PRIMARIES, OPERATIONS, sample_params
from lab.zoo.style_ops import PRIMARIES, _from_pil
from lab.zoo.style_zoo import generate_zoo, read_queries, read_zoo_info, zoo_styles
from lab.zoo.wide_ops import WIDE_PRIMARIES
from tests.helpers.style_families import assert_families_have_their_own_looks

# Pixels and zoo.json (without the family lists added later) of two tiny zoos as the code before
# the held-out families wrote them: the new split must not move a single existing pixel.
BEFORE = {
    "train": "2448faef1a5e6e8aa0ce619fead9d51630568069d7374fadec92bf19604a67bc",
    "eval": "44beb6283de5a77408d48600ef444b55afdc928aee93ed2ff72ff186f9d8d575",
}
FAMILY_KEYS = {"families", "held_out_families", "trained_families"}


def _content_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        digest.update(str(path.relative_to(root)).encode())
        if path.suffix == ".png":
            with Image.open(path) as image:
                digest.update(np.asarray(image.convert("RGB")).tobytes())
        elif path.name == "zoo.json":
            info = {k: v for k, v in json.loads(path.read_text()).items() if k not in FAMILY_KEYS}
            digest.update(json.dumps(info, sort_keys=True).encode())
        else:
            digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.mark.parametrize(("split", "seed"), [("train", 5), ("eval", 6)])
def test_existing_splits_are_bit_identical(tmp_path: Path, split: str, seed: int) -> None:
    root = generate_zoo(
        tmp_path / split,
        n_styles=12,
        n_samples=3,
        split=split,  # type: ignore[arg-type]
        seed=seed,
        progress=False,
        size=48,
        n_queries=14,
    )
    assert _content_hash(root) == BEFORE[split]


def test_held_out_families_are_new_and_only_in_their_split() -> None:
    assert len(HELD_OUT_PRIMARIES) >= 4
    assert not set(HELD_OUT_PRIMARIES) & set(PRIMARIES)
    for split in ("train", "eval", "demo"):
        drawn = {spec.primary for spec in zoo_styles(150, split, seed=1)}  # type: ignore[arg-type]
        assert drawn <= set(PRIMARIES)
    held_out = zoo_styles(150, "heldout-family", seed=1)
    assert {spec.primary for spec in held_out} == set(HELD_OUT_PRIMARIES)
    assert any(spec.lookalike_of is not None for spec in held_out)
    assert any(len(spec.ops) > 2 for spec in held_out)  # the usual extras ride along


def test_each_held_out_family_has_its_own_look() -> None:
    image = sample_content("eval-ref", np.random.default_rng(0), 64, scene_index=3).image
    assert_families_have_their_own_looks(HELD_OUT_PRIMARIES, OPERATIONS, sample_params, _from_pil(image))


def test_heldout_family_zoo_has_queries_and_records_its_families(tmp_path: Path) -> None:
    from findlora.commands import bench

    app = bench.bench_app
    root = tmp_path / "held"
    args = ["zoo", str(root), "--split", "heldout-family", "--styles", "6", "--samples", "3"]
    result = CliRunner().invoke(app, [*args, "--seed", "2", "--size", "48", "--queries", "5"])
    assert result.exit_code == 0, result.output
    catalog = read_catalog(root)
    assert len(catalog.loras) == 6
    assert len(read_queries(root)) == 5
    info = read_zoo_info(root)
    assert info["split"] == "heldout-family"
    assert info["families"] == list(HELD_OUT_PRIMARIES)
    assert info["held_out_families"] == list(HELD_OUT_PRIMARIES)
    assert info["trained_families"] == list(PRIMARIES + WIDE_PRIMARIES)
    styles = info["styles"]
    assert isinstance(styles, dict)
    assert {style["primary"] for style in styles.values()} <= set(HELD_OUT_PRIMARIES)
    bad = CliRunner().invoke(app, ["zoo", str(tmp_path / "x"), "--split", "held-out"])
    assert bad.exit_code != 0
