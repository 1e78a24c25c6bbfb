"""Training on several zoos at once: namespaced union, block-sparse validity, batches that keep
their positives and hard negatives, per-zoo and union reference caches, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from inference_service.models.style_encoder import read_metadata
from inference_service.training.references import (
    ReferenceSet,
    load_reference_set,
    load_training_references,
    sample_style_batch,
    sample_triplets,
)
from lab.zoo.style_zoo import generate_zoo
from tests.helpers.reference_sets import labelled_reference_set

SIZE = 32


@pytest.fixture(scope="module")
def zoos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("zoos")
    first = generate_zoo(
        root / "a" / "train", n_styles=5, n_samples=4, split="train", seed=3, progress=False, size=40
    )
    second = generate_zoo(
        root / "b" / "train", n_styles=4, n_samples=3, split="train", seed=4, progress=False, size=40
    )
    return [first, second]


@pytest.fixture(scope="module")
def union(zoos: list[Path]) -> ReferenceSet:
    return load_training_references(zoos, SIZE, progress=False)


def test_the_union_keeps_each_zoo_apart(zoos: list[Path], union: ReferenceSet) -> None:
    parts = [load_reference_set(zoo, SIZE, progress=False) for zoo in zoos]
    assert set(parts[0].sample_ids) & set(parts[1].sample_ids)  # ids shared by both zoos: the prefix matters
    assert len(set(union.slugs)) == union.n_loras == sum(p.n_loras for p in parts)
    assert len(set(union.sample_ids)) == union.n_samples == sum(p.n_samples for p in parts)
    assert union.slugs[0] == f"train#0/{parts[0].slugs[0]}"
    assert union.sample_ids[-1] == f"train#1/{parts[1].sample_ids[-1]}"
    assert union.n_references == sum(p.n_references for p in parts)
    assert union.catalogs == [str(z) for z in zoos]
    # block-diagonal validity: no reference of a LoRA on the other zoo's samples
    l0, s0 = parts[0].n_loras, parts[0].n_samples
    assert not union.valid[:l0, s0:].any()
    assert not union.valid[l0:, :s0].any()
    assert torch.equal(union.valid[:l0, :s0], parts[0].valid)
    assert torch.equal(union.valid[l0:, s0:], parts[1].valid)
    # every reference is the zoo's own image, whichever block it sits in
    for offset, part in ((0, parts[0]), (1, parts[1])):
        loras, samples = torch.nonzero(part.valid, as_tuple=True)
        shifted = (loras + offset * l0, samples + offset * s0)
        assert torch.equal(union.pick(*shifted), part.pick(loras, samples))
    report = union.report
    assert report.transfers == sum(p.report.transfers for p in parts)
    assert report.missing == sum(p.report.missing for p in parts)


def test_batches_stay_in_one_zoo_with_positives_and_hard_negatives(union: ReferenceSet) -> None:
    rng = np.random.default_rng(0)
    first_zoo = union.n_loras - 4  # the second zoo has 4 styles
    zoos_seen = set()
    for _ in range(40):
        batch = sample_style_batch(union, rng, styles=4, samples=3)
        labels, contents = batch.labels.tolist(), batch.contents.tolist()
        zoo = {label >= first_zoo for label in labels}
        assert len(zoo) == 1  # LoRAs of two zoos share no sample
        zoos_seen |= zoo
        assert all(labels.count(label) >= 2 for label in labels)  # every LoRA has a positive
        assert len(set(labels)) >= 2
        assert any(contents.count(c) > 1 for c in contents)  # same sample under several LoRAs
        assert torch.equal(batch.images, union.pick(batch.labels, batch.contents))
    assert zoos_seen == {False, True}


def _sparse_set() -> ReferenceSet:
    """Two groups of LoRAs drawing their own samples (as a real-art zoo's sources do); LoRA 0 has
    only two valid references."""
    valid = torch.zeros((6, 8), dtype=torch.bool)
    valid[0, [0, 3]] = True
    valid[1:3, 0:4] = True
    valid[3:6, 4:8] = True
    valid[4, 5] = False
    return labelled_reference_set(valid)


def test_sparse_catalogs_give_full_batches_even_for_a_lora_with_few_references() -> None:
    refs = _sparse_set()
    rng = np.random.default_rng(1)
    seen_lora_0 = 0
    for _ in range(200):
        batch = sample_style_batch(refs, rng, styles=3, samples=4)
        labels, contents = batch.labels.tolist(), batch.contents.tolist()
        assert all(labels.count(label) >= 2 for label in labels)
        assert len(set(labels)) >= 2
        assert all(bool(refs.valid[lbl, c]) for lbl, c in zip(labels, contents, strict=True))
        # the stored image of (lora, sample) is the one asked for
        assert batch.images[:, 0, 0, 0].tolist() == [
            8 * lbl + c for lbl, c in zip(labels, contents, strict=True)
        ]
        seen_lora_0 += 0 in labels
    assert seen_lora_0 > 0
    anchor, positive, negative = sample_triplets(refs, rng, 30)
    assert anchor.shape == positive.shape == negative.shape == (30, 3, 2, 2)
    assert not torch.equal(anchor, positive)


def test_caches_per_zoo_and_for_the_union(zoos: list[Path], union: ReferenceSet, tmp_path: Path) -> None:
    per_zoo = [tmp_path / "a.safetensors", tmp_path / "b.safetensors"]
    written = load_training_references(zoos, SIZE, caches=per_zoo, progress=False)
    assert all(path.exists() for path in per_zoo)
    read = load_training_references(zoos, SIZE, caches=per_zoo, progress=False)
    for refs in (written, read):
        assert refs.slugs == union.slugs
        assert refs.sample_ids == union.sample_ids
        assert torch.equal(torch.cat(refs.blocks), torch.cat(union.blocks))
        assert torch.equal(refs.valid, union.valid)
    whole = tmp_path / "union.safetensors"
    load_training_references(zoos, SIZE, caches=[whole], progress=False)
    again = load_training_references(zoos, SIZE, caches=[whole], progress=False)
    assert again.slugs == union.slugs
    assert torch.equal(again.pick(*torch.nonzero(union.valid, as_tuple=True)), torch.cat(union.blocks))
    with pytest.raises(ValueError, match="caches the references of"):
        load_training_references(zoos[:1], SIZE, caches=[whole], progress=False)
    with pytest.raises(ValueError, match="3 reference caches for 2 catalogs"):
        load_training_references(zoos, SIZE, caches=[whole, whole, whole], progress=False)


def test_train_command_on_two_zoos(zoos: list[Path], tmp_path: Path) -> None:
    from tests.training.test_cli import _app

    out = tmp_path / "enc.safetensors"
    args = ["train", *map(str, zoos), "--out", str(out), "--max-steps", "2", "--head-steps", "2"]
    args += [
        "--input-size",
        str(SIZE),
        "--threads",
        "1",
        "--styles-per-batch",
        "3",
        "--samples-per-batch",
        "2",
    ]
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0, result.output
    meta = read_metadata(out)
    assert json.loads(meta["catalogs"]) == [str(z) for z in zoos]
    bad = CliRunner().invoke(_app(), ["train", str(zoos[0]), str(tmp_path), "--out", str(out)])
    assert bad.exit_code != 0
    assert "not a catalog directory" in " ".join(bad.output.replace("│", " ").split())


def test_a_single_dense_zoo_keeps_the_original_draw(zoos: list[Path]) -> None:
    """K LoRAs and P samples at random, as every documented training run drew them."""
    refs = load_reference_set(zoos[0], SIZE, progress=False)
    assert refs.dense
    batch = sample_style_batch(refs, np.random.default_rng(5), styles=3, samples=2)
    rng = np.random.default_rng(5)
    loras = rng.choice(refs.n_loras, size=3, replace=False)
    samples = rng.choice(refs.n_samples, size=2, replace=False)
    expected = [(int(lo), int(s)) for lo in loras for s in samples if bool(refs.valid[lo, s])]
    assert list(zip(batch.labels.tolist(), batch.contents.tolist(), strict=True)) == expected
