"""Filled batches for sparse catalogs: a LoRA that shares no sample with another still meets
negatives when `fill` is on, and a batch whose group is already full is drawn as without it."""

from __future__ import annotations

import numpy as np
import torch

from inference_service.training.losses import batch_all_triplet_loss
from inference_service.training.references import ReferenceSet, sample_style_batch
from tests.helpers.reference_sets import labelled_reference_set

N_LORAS, N_SAMPLES = 7, 10
LONE = 6  # draws samples 8-9 alone


def _grouped_set() -> ReferenceSet:
    """Group A (LoRAs 0-3) on samples 0-3, group B (4-5) on samples 4-7, LoRA 6 alone on 8-9.
    Image (lora, sample) holds the value 10 * lora + sample (N_SAMPLES is 10)."""
    valid = torch.zeros((N_LORAS, N_SAMPLES), dtype=torch.bool)
    valid[0:4, 0:4] = True
    valid[4:6, 4:8] = True
    valid[LONE, 8:10] = True
    return labelled_reference_set(valid)


def _pairs(refs: ReferenceSet, labels: torch.Tensor, contents: torch.Tensor) -> list[tuple[int, int]]:
    pairs = list(zip(labels.tolist(), contents.tolist(), strict=True))
    assert all(bool(refs.valid[lora, sample]) for lora, sample in pairs)
    return pairs


def test_without_fill_a_lone_lora_trains_on_batches_without_a_negative() -> None:
    refs = _grouped_set()
    rng = np.random.default_rng(0)
    lone_batches = 0
    for _ in range(200):
        batch = sample_style_batch(refs, rng, styles=4, samples=2)
        if LONE in batch.labels.tolist():
            lone_batches += 1
            assert set(batch.labels.tolist()) == {LONE}
            loss, active = batch_all_triplet_loss(torch.randn(len(batch.labels), 8), batch.labels, margin=0.2)
            assert float(loss) == 0.0
            assert active == 0.0
    assert lone_batches > 0


def test_fill_gives_every_batch_k_loras_with_positives_and_their_own_samples() -> None:
    refs = _grouped_set()
    rng = np.random.default_rng(1)
    lone_with_others = 0
    for _ in range(300):
        batch = sample_style_batch(refs, rng, styles=4, samples=2, fill=True)
        pairs = _pairs(refs, batch.labels, batch.contents)
        labels = [lora for lora, _ in pairs]
        assert len(set(labels)) == 4
        assert all(labels.count(lora) == 2 for lora in set(labels))  # P of each: a positive each
        assert len(set(pairs)) == len(pairs)
        assert batch.images[:, 0, 0, 0].tolist() == [10 * lora + sample for lora, sample in pairs]
        lone_with_others += LONE in labels
        if LONE in labels:
            _, active = batch_all_triplet_loss(torch.randn(len(labels), 8), batch.labels, margin=0.2)
            assert active > 0.0
    assert lone_with_others > 0


def test_fill_leaves_a_full_group_as_it_was_drawn() -> None:
    refs = _grouped_set()
    for seed in range(50):
        plain = sample_style_batch(refs, np.random.default_rng(seed), styles=3, samples=2)
        filled = sample_style_batch(refs, np.random.default_rng(seed), styles=3, samples=2, fill=True)
        if len(set(plain.labels.tolist())) == 3:  # group A has enough LoRAs: no filler
            assert torch.equal(plain.labels, filled.labels)
            assert torch.equal(plain.contents, filled.contents)
            assert torch.equal(plain.images, filled.images)
        else:  # group B or the lone LoRA: the group comes first, then the fillers
            head = len(plain.labels)
            assert torch.equal(plain.labels, filled.labels[:head])
            assert len(set(filled.labels.tolist())) == 3
            assert not set(filled.labels[head:].tolist()) & set(plain.labels.tolist())


def test_fill_with_fewer_usable_loras_than_k_takes_them_all() -> None:
    refs = _grouped_set()
    batch = sample_style_batch(refs, np.random.default_rng(3), styles=20, samples=2, fill=True)
    assert set(batch.labels.tolist()) == set(range(N_LORAS))


def test_catalog_adaptation_fills_its_batches_and_training_runs_do_not() -> None:
    from inference_service.models.style_encoder import untrained_encoder
    from inference_service.training.adapt import AdaptConfig, adapt_train_config
    from inference_service.training.trainer import TrainConfig

    assert adapt_train_config(untrained_encoder(), AdaptConfig(), 10).fill_batches
    assert not TrainConfig().fill_batches  # the shipped encoders' runs reproduce without it
