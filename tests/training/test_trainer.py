from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from inference_service.models.style_encoder import EncoderConfig, StyleEncoder, load_encoder, read_metadata
from inference_service.training.checkpoint import load_checkpoint
from inference_service.training.losses import (
    batch_all_triplet_loss,
    davg_softmax_loss,
    davg_triplet_loss,
    proxy_softmax_loss,
    triplet_loss,
)
from inference_service.training.references import (
    ReferenceSet,
    as_float,
    load_reference_set,
    sample_style_batch,
)
from inference_service.training.trainer import (
    TrainConfig,
    _make_optimizer,
    build_model,
    initial_proxies,
    train,
)
from lab.zoo.style_zoo import read_zoo_info

TINY = EncoderConfig(
    widths=(8, 16), dim=16, input_size=32, stem_width=4, hist_bins=4, joint_bins=3, hidden=32
)
CONFIG = TrainConfig(
    epochs=12,
    styles_per_batch=4,
    samples_per_batch=3,
    crop=0,
    checkpoint_every=4,
    lr=3e-3,
    encoder=TINY,
    head_steps=6,
    head_styles_per_batch=4,
)


@pytest.fixture(scope="module")
def refs(tiny_zoo: Path) -> ReferenceSet:
    return load_reference_set(tiny_zoo, TINY.input_size, progress=False)


def _all_triplets_loss(model: StyleEncoder, refs: ReferenceSet) -> float:
    """Mean triplet loss over every valid triplet of the whole reference set."""
    labels = torch.arange(refs.n_loras).repeat_interleave(refs.n_samples)[refs.valid.flatten()]
    with torch.no_grad():
        embeddings = model.eval()(as_float(torch.cat(refs.blocks)))
    distances = torch.cdist(embeddings, embeddings)
    same = labels[:, None] == labels[None, :]
    valid = (same & ~torch.eye(len(labels), dtype=torch.bool))[:, :, None] & ~same[:, None, :]
    losses = torch.relu(distances[:, :, None] - distances[:, None, :] + CONFIG.margin)
    return float(losses[valid].mean())


def test_losses_by_hand() -> None:
    a = torch.tensor([[0.0, 0.0]])
    p = torch.tensor([[3.0, 4.0]])  # |a-p| = 5
    n = torch.tensor([[6.0, 8.0]])  # |a-n| = 10
    assert float(triplet_loss(a, p, n, margin=1.0)) == pytest.approx(0.0)
    assert float(triplet_loss(a, n, p, margin=1.0)) == pytest.approx(6.0)
    # Points on a line: labels 0,0,1 at x = 0, 1, 3. Valid triplets (a,p,n): (0,1,2) gives
    # 1 - 3 + m and (1,0,2) gives 1 - 2 + m. m = 1.5: only the second is active (0.5).
    emb = torch.tensor([[0.0], [1.0], [3.0]])
    loss, active = batch_all_triplet_loss(emb, torch.tensor([0, 0, 1]), margin=1.5)
    assert float(loss) == pytest.approx(0.5, abs=1e-5)
    assert active == pytest.approx(0.5)
    # m = 2.5: both active, 0.5 and 1.5 -> mean 1.0.
    loss, active = batch_all_triplet_loss(emb, torch.tensor([0, 0, 1]), margin=2.5)
    assert float(loss) == pytest.approx(1.0, abs=1e-5)
    assert active == pytest.approx(1.0)
    loss, active = batch_all_triplet_loss(emb, torch.tensor([0, 0, 1]), margin=0.1)
    assert float(loss) == pytest.approx(0.0)
    assert active == pytest.approx(0.0)


def test_davg_losses_by_hand() -> None:
    # Labels 0,0,0,1,1 at x = 0, 1, 2, 3, 5. Anchor x=2: d_avg to class 0 (x=0,1) = 1.5, to class 1 = 2.
    emb = torch.tensor([[0.0], [1.0], [2.0], [3.0], [5.0]])
    labels = torch.tensor([0, 0, 0, 1, 1])
    # d_avg per anchor: x=0 -> own 1.5, other 4; x=1 -> 1, 3; x=2 -> 1.5, 2;
    # x=3 -> own 2 (x=5), other 2; x=5 -> own 2, other 4. Margin 1: violations 0.5 (x=2), 1 (x=3).
    loss, active = davg_triplet_loss(emb, labels, margin=1.0)
    assert float(loss) == pytest.approx(0.75, abs=1e-5)
    assert active == pytest.approx(2 / 5)
    loss, correct = davg_softmax_loss(emb, labels, temperature=1.0)
    expected = np.mean(
        [np.log1p(np.exp(own - other)) for own, other in ((1.5, 4), (1, 3), (1.5, 2), (2, 2), (2, 4))]
    )
    assert float(loss) == pytest.approx(expected, abs=1e-5)
    assert correct == pytest.approx(4 / 5)  # the tie at x=3 goes to the first class (argmax)


@pytest.mark.parametrize("loss", ["davg", "davg-softmax"])
def test_davg_objectives_train(tiny_zoo: Path, refs: ReferenceSet, tmp_path: Path, loss: str) -> None:
    config = replace(CONFIG, loss=loss)  # type: ignore[arg-type]
    before = _all_triplets_loss(build_model(config), refs)
    out = tmp_path / "enc.safetensors"
    train(tiny_zoo, out, config, refs=refs, progress=False)
    assert _all_triplets_loss(load_encoder(out), refs) < before
    with pytest.raises(ValueError, match="unknown loss"):
        train(tiny_zoo, out, replace(CONFIG, loss="nope"), refs=refs, progress=False)  # type: ignore[arg-type]


def test_cleansing_drops_exactly_the_failed_transfers(tiny_zoo: Path, refs: ReferenceSet) -> None:
    failed = read_zoo_info(tiny_zoo)["failed_transfers"]
    assert isinstance(failed, list)
    assert failed, "the fixture zoo must contain failed transfers"
    assert refs.report.dropped == len(failed)
    assert refs.report.transfers == 30
    assert int((~refs.valid).sum()) == len(failed)
    kept_all = load_reference_set(tiny_zoo, TINY.input_size, cleansing_threshold=None, progress=False)
    assert kept_all.report.dropped == 0
    assert bool(kept_all.valid.all())


def test_style_batches_hold_hard_negatives(refs: ReferenceSet) -> None:
    batch = sample_style_batch(refs, np.random.default_rng(0), styles=3, samples=3)
    labels, contents = batch.labels.tolist(), batch.contents.tolist()
    pairs = {(a, b) for a, b in zip(labels, contents, strict=True)}
    assert len(pairs) == len(labels)
    assert len(set(labels)) == 3
    assert any(contents.count(c) > 1 for c in contents)  # same sample under several LoRAs
    assert all(bool(refs.valid[lbl, c]) for lbl, c in pairs)


def test_training_lowers_the_triplet_loss_and_saves_a_loadable_encoder(
    tiny_zoo: Path, refs: ReferenceSet, tmp_path: Path
) -> None:
    before = _all_triplets_loss(build_model(CONFIG), refs)
    out = tmp_path / "enc.safetensors"
    result = train(tiny_zoo, out, CONFIG, refs=refs, progress=False, provenance={"command": "test"})
    after = _all_triplets_loss(load_encoder(out), refs)
    assert after < 0.8 * before
    assert result.loss_curve_path.exists()
    assert result.steps == len(result.losses) > 0
    meta = read_metadata(out)
    assert meta["command"] == "test"
    assert json.loads(meta["cleansing"])["dropped"] == refs.report.dropped


def test_checkpoint_reloads_bit_exactly(tiny_zoo: Path, refs: ReferenceSet, tmp_path: Path) -> None:
    out = tmp_path / "enc.safetensors"
    result = train(tiny_zoo, out, CONFIG, refs=refs, progress=False, stop_after_step=6)
    model = build_model(replace(CONFIG, seed=99))  # different init: everything must come from the file
    optimizer = _make_optimizer(CONFIG, model)
    state = load_checkpoint(result.checkpoint_path, model, optimizer)
    assert state.step == 6
    saved = load_file(str(out))
    for key, value in model.state_dict().items():
        assert torch.equal(value, saved[key]), key
    moments = [s["exp_avg"] for s in optimizer.state_dict()["state"].values()]
    assert moments
    assert any(float(m.abs().sum()) > 0 for m in moments)


def test_resume_continues_from_the_saved_step(tiny_zoo: Path, refs: ReferenceSet, tmp_path: Path) -> None:
    straight = train(tiny_zoo, tmp_path / "a.safetensors", CONFIG, refs=refs, progress=False)
    interrupted = tmp_path / "b.safetensors"
    first = train(tiny_zoo, interrupted, CONFIG, refs=refs, progress=False, stop_after_step=5)
    assert first.stopped_early
    assert first.steps == 5
    resumed = train(tiny_zoo, interrupted, CONFIG, refs=refs, progress=False)
    assert resumed.steps == straight.steps
    assert resumed.losses == straight.losses  # the same batches and the same updates
    a, b = load_file(str(tmp_path / "a.safetensors")), load_file(str(interrupted))
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="different training configuration"):
        train(tiny_zoo, interrupted, replace(CONFIG, lr=1e-2), refs=refs, progress=False)


def test_proxy_loss_by_hand() -> None:
    embeddings = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    proxies = torch.tensor([[2.0, 0.0], [0.0, 3.0]])  # normalised inside: unit axes
    labels = torch.tensor([0, 0])
    # logits 2 * cos: first row (2, 0) -> -log softmax_0 = log(1 + e^-2); second (0, 2) -> log(1 + e^2)
    expected = (np.log1p(np.exp(-2.0)) + np.log1p(np.exp(2.0))) / 2
    loss = proxy_softmax_loss(embeddings, labels, proxies, scale=2.0)
    assert float(loss) == pytest.approx(expected, abs=1e-5)


def test_initial_proxies_are_the_styles_unit_centroids(refs: ReferenceSet) -> None:
    model = build_model(CONFIG)
    proxies = initial_proxies(model, refs, samples=2)
    assert proxies.shape == (refs.n_loras, TINY.dim)
    lora = 1
    chosen = torch.nonzero(refs.valid[lora]).flatten()[:2]
    with torch.no_grad():
        centroid = model.eval()(as_float(refs.pick(torch.full_like(chosen, lora), chosen))).sum(dim=0)
    assert torch.allclose(proxies[lora], centroid / centroid.norm(), atol=1e-5)


def test_proxy_term_trains_and_resumes_bit_exactly(
    tiny_zoo: Path, refs: ReferenceSet, tmp_path: Path
) -> None:
    config = replace(CONFIG, proxy_weight=1.0, proxy_scale=8.0)
    before = _all_triplets_loss(build_model(config), refs)
    straight = train(tiny_zoo, tmp_path / "a.safetensors", config, refs=refs, progress=False)
    assert _all_triplets_loss(load_encoder(straight.model_path), refs) < before
    # The proxies live in the checkpoint, not in the shipped encoder.
    with safe_open(str(straight.checkpoint_path), framework="pt") as handle:
        assert handle.get_slice("model/proxies").get_shape() == [refs.n_loras, TINY.dim]
    assert not any("prox" in key for key in load_file(str(straight.model_path)))
    interrupted = tmp_path / "b.safetensors"
    train(tiny_zoo, interrupted, config, refs=refs, progress=False, stop_after_step=9)
    resumed = train(tiny_zoo, interrupted, config, refs=refs, progress=False)
    assert resumed.losses == straight.losses  # proxies and their optimizer state came back too
    a, b = load_file(str(straight.model_path)), load_file(str(interrupted))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_init_from_continues_from_a_trained_encoder(
    tiny_zoo: Path, refs: ReferenceSet, tmp_path: Path
) -> None:
    first = train(tiny_zoo, tmp_path / "first.safetensors", CONFIG, refs=refs, progress=False)
    again = replace(CONFIG, head_steps=0, epochs=1, lr=1e-3)
    follow = train(
        tiny_zoo,
        tmp_path / "follow.safetensors",
        again,
        refs=refs,
        init_from=first.model_path,
        progress=False,
    )
    # A continuation starts where the first run ended, far below a fresh start's first loss.
    fresh = train(tiny_zoo, tmp_path / "fresh.safetensors", again, refs=refs, progress=False)
    assert follow.losses[0] < fresh.losses[0]
    meta = read_metadata(follow.model_path)
    assert meta["init_from"] == str(first.model_path)
    other = replace(CONFIG, encoder=replace(TINY, hidden=24))
    with pytest.raises(ValueError, match="another architecture"):
        train(
            tiny_zoo, tmp_path / "x.safetensors", other, refs=refs, init_from=first.model_path, progress=False
        )


def test_paper_setting_and_local_vgg19_weights(tmp_path: Path) -> None:
    paper = TrainConfig.paper()
    assert (paper.backbone, paper.optimizer, paper.lr, paper.batch_size, paper.epochs) == (
        "vgg19",
        "sgd",
        1e-3,
        20,
        12,
    )
    assert paper.encoder.dim == 128
    assert paper.mining == "triplet"
    from torchvision.models import vgg19

    features = vgg19(weights=None).features  # no download: random weights stand in for ImageNet ones
    path = tmp_path / "vgg19.safetensors"
    save_file({f"features.{k}": v.contiguous() for k, v in features.state_dict().items()}, str(path))
    model = StyleEncoder(EncoderConfig.vgg19(input_size=32))
    model.load_backbone_weights(path)
    assert torch.equal(model.stages[4][-2].weight, features[34].weight)  # conv5_4
    out = model.eval()(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 128)
    assert torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-5)


@pytest.mark.parametrize(("max_steps", "expected"), [(3, 3), (8, 8)])
def test_max_steps_caps_the_whole_run_head_phase_included(
    tiny_zoo: Path, refs: ReferenceSet, tmp_path: Path, max_steps: int, expected: int
) -> None:
    # CONFIG trains the head alone for 6 steps first: 3 ends inside that phase, 8 two steps after it.
    config = replace(CONFIG, max_steps=max_steps)
    result = train(tiny_zoo, tmp_path / "enc.safetensors", config, refs=refs, progress=False)
    assert result.steps == len(result.losses) == expected
