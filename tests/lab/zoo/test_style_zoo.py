from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from inference_service.catalog.format import read_catalog
from lab.zoo.content import FACES, PHOTOS
from lab.zoo.style_ops import apply_style, sample_style
from lab.zoo.style_zoo import generate_zoo, read_queries, read_zoo_info, zoo_styles


def _zoo(root: Path, split: str, n_styles: int = 6, n_samples: int = 5) -> Path:
    return generate_zoo(
        root / split,
        n_styles=n_styles,
        n_samples=n_samples,
        split=split,  # type: ignore[arg-type]
        seed=3,
        progress=False,
        size=64,
        n_queries=4,
    )


def test_eval_zoo_is_a_valid_catalog_with_queries(tmp_path: Path) -> None:
    root = _zoo(tmp_path, "eval")
    catalog = read_catalog(root)
    assert len(catalog.loras) == 6
    assert len(catalog.samples) == 5
    for entry in catalog.loras.values():
        assert set(entry.references) == set(catalog.samples)
    queries = read_queries(root)
    assert len(queries) == 4
    assert len({q.slug for q in queries}) == 4  # one query per LoRA
    assert all(q.slug in catalog.loras and q.path.exists() for q in queries)
    with Image.open(queries[0].path) as image:
        assert image.size == (64, 64)


def test_train_and_eval_share_no_content_or_style(tmp_path: Path) -> None:
    train = read_zoo_info(_zoo(tmp_path, "train", n_styles=8, n_samples=12))
    evaluation = read_zoo_info(_zoo(tmp_path, "eval", n_styles=8, n_samples=12))
    train_sources = set(train["samples"].values())  # type: ignore[attr-defined]
    eval_sources = set(evaluation["samples"].values())  # type: ignore[attr-defined]
    query_sources = {q["source"] for q in evaluation["queries"]}  # type: ignore[attr-defined]
    assert not train_sources & eval_sources
    assert not query_sources & (train_sources | eval_sources)
    train_styles = {json.dumps(s, sort_keys=True) for s in train["styles"].values()}  # type: ignore[attr-defined]
    eval_styles = {json.dumps(s, sort_keys=True) for s in evaluation["styles"].values()}  # type: ignore[attr-defined]
    assert not train_styles & eval_styles
    assert not read_queries(tmp_path / "train")


def test_content_pools_are_disjoint() -> None:
    pools = list(PHOTOS)
    for i, a in enumerate(pools):
        for b in pools[i + 1 :]:
            assert not set(PHOTOS[a]) & set(PHOTOS[b])
            assert not set(FACES[a]) & set(FACES[b])
    assert {"cat", "chelsea"} <= set(PHOTOS["eval-ref"])  # the same photograph: same pool


def test_zoo_is_deterministic_and_contains_lookalikes() -> None:
    first = [s.to_json() for s in zoo_styles(40, "eval", seed=5)]
    second = [s.to_json() for s in zoo_styles(40, "eval", seed=5)]
    assert first == second
    assert any(s["lookalike_of"] is not None for s in first)
    assert first != [s.to_json() for s in zoo_styles(40, "eval", seed=6)]


def test_a_style_changes_the_image_and_keeps_its_size() -> None:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, size=(48, 40, 3), dtype=np.uint8), "RGB")
    for index in range(20):
        styled = apply_style(sample_style(np.random.default_rng(index)), image, np.random.default_rng(1))
        assert styled.size == image.size
        assert np.abs(np.asarray(styled, np.int16) - np.asarray(image, np.int16)).mean() > 1.0


def test_face_content_is_real_faces_split_between_pools() -> None:
    import skimage.data

    from lab.zoo.content import LFW_FACES, sample_content

    assert "100 first images are faces" in " ".join((skimage.data.lfw_subset.__doc__ or "").split())
    assert (LFW_FACES.start, LFW_FACES.stop) == (0, 100)
    for pool in PHOTOS:
        assert set(FACES[pool]) <= set(LFW_FACES)
        drawn = {
            sample_content(pool, np.random.default_rng([pool == "train", i]), 32, i).source
            for i in range(300)
        }
        faces = {int(source.split(":")[1]) for source in drawn if source.startswith("face:")}
        assert faces  # the pool does draw faces ...
        assert faces <= set(FACES[pool])  # ... and only its own


def test_more_queries_than_loras_come_in_rounds_and_keep_the_first_round() -> None:
    from lab.zoo.style_zoo import _stream, query_styles

    first_round = sorted(int(i) for i in _stream(4, "eval", 3).choice(10, size=4, replace=False))
    assert query_styles(10, 4, 4, "eval") == first_round  # zoos with <= 1 query per LoRA unchanged
    chosen = query_styles(10, 25, 4, "eval")
    assert len(chosen) == 25
    assert sorted(chosen[:10]) == sorted(chosen[10:20]) == list(range(10))
    assert len(set(chosen[20:])) == 5
