"""Train the triplet style encoder on a catalog directory (docs/design.md 5).

Triplets: "batch-all" (default: K LoRAs x the same P samples, so the hard negative "same sample,
other LoRA" is always present; it trained best here) or "triplet", the paper's independent ones.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from tqdm import tqdm  # type: ignore[import-untyped]

from inference_service.models.style_encoder import (
    EncoderConfig,
    StyleEncoder,
    encoder_fingerprint,
    load_encoder,
    save_encoder,
    untrained_encoder,
)
from inference_service.training.checkpoint import (
    TrainingState,
    load_checkpoint,
    restore_generator,
    save_checkpoint,
)
from inference_service.training.losses import (
    batch_all_triplet_loss,
    davg_softmax_loss,
    davg_triplet_loss,
    proxy_softmax_loss,
    triplet_loss,
)
from inference_service.training.references import (
    CleansingReport,
    ReferenceSet,
    as_float,
    load_training_references,
    sample_style_batch,
    sample_triplets,
)
from inference_service.training.schedule import PaceFit, cosine, warm_cosine

Mining = Literal["batch-all", "triplet"]
Loss = Literal["triplet", "davg", "davg-softmax"]
LOSSES: tuple[Loss, ...] = ("triplet", "davg", "davg-softmax")


@dataclass(frozen=True)
class TrainConfig:
    backbone: str = "stats"
    mining: Mining = "batch-all"
    epochs: float = 0.75  # end-to-end passes over the valid references (fractions allowed)
    max_steps: int | None = None  # cap on optimisation steps (None: from epochs)
    styles_per_batch: int = 12  # K (batch-all)
    samples_per_batch: int = 4  # P (batch-all)
    # Sparse catalogs: fill a batch whose sample-sharing group has fewer than K LoRAs with LoRAs of
    # other groups (references.sample_style_batch). Off for the shipped encoders' runs, which
    # reproduce without it.
    fill_batches: bool = False
    batch_size: int = 20  # triplets per step (triplet mining)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = 2e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: Literal["cosine", "constant"] = "cosine"
    margin: float = 0.2
    # batch-all objective: "triplet" (every a/p/n triplet), "davg" (the triplet loss on the anchor's
    # d_avg to each class of the batch, the ranking the service uses) or "davg-softmax"
    # (cross-entropy over the batch's classes with logits -d_avg / temperature)
    loss: Loss = "triplet"
    temperature: float = 0.1
    # Optional second term: proxy_weight x normalised softmax over every training style (one learnt
    # proxy per style, initialised at the style's centroid). 0: off.
    proxy_weight: float = 0.0
    proxy_scale: float = 16.0
    proxy_lr_scale: float = 10.0  # each proxy is in a batch rarely (K of thousands of styles)
    proxy_init_samples: int = 8  # samples per style embedded to place its initial proxy
    crop: int = 112  # random crop of the input-size image while training (0: none)
    cleansing_threshold: float | None = 0.01
    seed: int = 0
    checkpoint_every: int = 100
    # Phase 1: train the head alone on pooled statistics computed once (thousands of cheap steps),
    # then phase 2 fine-tunes the whole network end to end.
    head_steps: int = 4000
    head_lr: float = 2e-3
    head_styles_per_batch: int = 24
    encoder: EncoderConfig = field(default_factory=EncoderConfig)

    @classmethod
    def paper(cls, **overrides: Any) -> TrainConfig:
        """VGG19, SGD lr 0.001, batch 20, 12 epochs, 128-d (ImageNet weights: --backbone-weights)."""
        base = cls(
            backbone="vgg19",
            mining="triplet",
            epochs=12,
            batch_size=20,
            optimizer="sgd",
            lr=1e-3,
            momentum=0.0,
            weight_decay=0.0,
            schedule="constant",
            crop=0,
            head_steps=0,
            encoder=EncoderConfig.vgg19(dim=128, input_size=224),
        )
        return replace(base, **overrides)

    def to_json(self) -> str:
        data = asdict(self)
        data["encoder"] = json.loads(self.encoder.to_json())
        return json.dumps(data, sort_keys=True)


@dataclass(frozen=True)
class TrainResult:
    model_path: Path
    checkpoint_path: Path
    loss_curve_path: Path
    steps: int
    losses: list[float]
    cleansing: CleansingReport
    seconds: float
    stopped_early: bool
    model: StyleEncoder | None = None  # the trained encoder (eval mode, on the training device)


def head_steps_for(config: TrainConfig) -> int:
    """Phase-1 steps; `max_steps` caps the whole run, this phase included."""
    return config.head_steps if config.max_steps is None else min(config.head_steps, config.max_steps)


def steps_for(config: TrainConfig, refs: ReferenceSet) -> int:
    """End-to-end (phase 2) steps: what `max_steps` leaves after phase 1."""
    per_step = (
        config.styles_per_batch * config.samples_per_batch
        if config.mining == "batch-all"
        else config.batch_size
    )
    steps = math.ceil(config.epochs * int(refs.valid.sum()) / per_step)
    if config.max_steps is None:
        return steps
    return min(steps, config.max_steps - head_steps_for(config))


class ProxyTrainee(nn.Module):
    """The encoder with its training-only style proxies: what the optimizer and checkpoints see
    when the proxy term is on (the shipped file holds the encoder alone)."""

    def __init__(self, encoder: StyleEncoder, proxies: torch.Tensor) -> None:
        super().__init__()
        self.encoder = encoder
        self.proxies = nn.Parameter(proxies)


def _make_optimizer(
    config: TrainConfig, model: StyleEncoder, proxies: nn.Parameter | None = None
) -> torch.optim.Optimizer:
    groups: list[dict[str, Any]] = [{"params": list(model.parameters()), "lr_scale": 1.0}]
    if proxies is not None:
        groups.append({"params": [proxies], "lr_scale": config.proxy_lr_scale, "weight_decay": 0.0})
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)


def initial_proxies(
    model: StyleEncoder, refs: ReferenceSet, samples: int, progress: bool = False, chunk: int = 128
) -> torch.Tensor:
    """Each style's unit centroid under the starting encoder (its first `samples` valid references):
    proxies that agree with the encoder from step one instead of random directions."""
    picks: list[tuple[int, int]] = []
    for lora in range(refs.n_loras):
        valid = torch.nonzero(refs.valid[lora]).flatten()[:samples]
        picks += [(lora, int(s)) for s in valid]
    loras = torch.tensor([p[0] for p in picks])
    contents = torch.tensor([p[1] for p in picks])
    device = _device_of(model)
    sums = torch.zeros(refs.n_loras, model.config.dim, device=device)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for start in tqdm(
            range(0, len(picks), chunk), desc="place proxies", unit="chunk", disable=not progress
        ):
            images = refs.pick(loras[start : start + chunk], contents[start : start + chunk])
            sums.index_add_(0, loras[start : start + chunk].to(device), model(as_float(images.to(device))))
    model.train(was_training)
    return torch.nn.functional.normalize(sums, dim=1)


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _crop(batch: torch.Tensor, size: int, rng: np.random.Generator) -> torch.Tensor:
    """The same random crop offset for the whole batch (cheap; styles are stationary)."""
    full = batch.shape[-1]
    if not size or size >= full:
        return batch
    top, left = (int(v) for v in rng.integers(0, full - size + 1, size=2))
    return batch[..., top : top + size, left : left + size]


def _batch_loss(
    embeddings: torch.Tensor, labels: torch.Tensor, config: TrainConfig, proxies: torch.Tensor | None
) -> torch.Tensor:
    if config.loss == "davg":
        loss = davg_triplet_loss(embeddings, labels, config.margin)[0]
    elif config.loss == "davg-softmax":
        loss = davg_softmax_loss(embeddings, labels, config.temperature)[0]
    else:
        loss = batch_all_triplet_loss(embeddings, labels, config.margin)[0]
    if proxies is not None:
        proxy_term = proxy_softmax_loss(embeddings, labels, proxies, config.proxy_scale)
        loss = loss + config.proxy_weight * proxy_term
    return loss


def _step_loss(
    model: StyleEncoder,
    refs: ReferenceSet,
    config: TrainConfig,
    rng: np.random.Generator,
    proxies: torch.Tensor | None = None,
) -> torch.Tensor:
    if config.mining == "batch-all":
        batch = sample_style_batch(
            refs, rng, config.styles_per_batch, config.samples_per_batch, config.fill_batches
        )
        device = _device_of(model)
        embeddings = model(as_float(_crop(batch.images, config.crop, rng).to(device)))
        return _batch_loss(embeddings, batch.labels.to(device), config, proxies)
    if proxies is not None:
        raise ValueError("the proxy term needs batch-all mining (labelled batches)")
    anchor, positive, negative = sample_triplets(refs, rng, config.batch_size)
    stacked = _crop(torch.cat([anchor, positive, negative]), config.crop, rng)
    a, p, n = model(as_float(stacked.to(_device_of(model)))).chunk(3)
    return triplet_loss(a, p, n, config.margin)


def pooled_features(
    model: StyleEncoder, refs: ReferenceSet, progress: bool, chunk: int = 128
) -> torch.Tensor:
    """The head's input for every valid reference, (N, D) in row order, at the full input size."""
    out = torch.zeros(refs.n_references, model.pooled_dim)
    start = 0
    with torch.inference_mode():
        for images, keep in tqdm(
            refs.chunks(chunk), desc="pool features", unit="chunk", disable=not progress
        ):
            pooled = model.pooled(as_float(images.to(_device_of(model)))).cpu()[keep]
            out[start : start + len(pooled)] = pooled
            start += len(pooled)
    return out


def _head_step_loss(
    model: StyleEncoder,
    features: torch.Tensor,
    refs: ReferenceSet,
    config: TrainConfig,
    rng: np.random.Generator,
    proxies: torch.Tensor | None = None,
) -> torch.Tensor:
    batch = sample_style_batch(
        refs, rng, config.head_styles_per_batch, config.samples_per_batch, config.fill_batches
    )
    device = _device_of(model)
    embeddings = model.project(features[refs.slot[batch.labels, batch.contents]].to(device))
    return _batch_loss(embeddings, batch.labels.to(device), config, proxies)


def build_model(config: TrainConfig, backbone_weights: Path | None = None) -> StyleEncoder:
    encoder_config = replace(config.encoder, backbone=config.backbone)
    if config.backbone == "vgg19" and config.encoder.backbone != "vgg19":
        encoder_config = EncoderConfig.vgg19(dim=config.encoder.dim, input_size=config.encoder.input_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = StyleEncoder(encoder_config)
    if backbone_weights is not None:
        model.load_backbone_weights(backbone_weights)
    return model


def save_loss_curve(losses: list[float], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    steps = np.arange(1, len(losses) + 1)
    ax.plot(steps, losses, alpha=0.3, label="step loss")
    if len(losses) >= 10:
        window = max(5, len(losses) // 50)
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1 :], smooth, label=f"moving mean ({window})")
    ax.set_xlabel("step")
    ax.set_ylabel("triplet loss")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def train(
    catalog: Path | Sequence[Path],
    out: Path,
    config: TrainConfig = TrainConfig(),
    *,
    checkpoint: Path | None = None,
    resume: bool = True,
    refs: ReferenceSet | None = None,
    refs_cache: Path | Sequence[Path] | None = None,
    backbone_weights: Path | None = None,
    init_from: Path | None = None,
    init_model: StyleEncoder | None = None,
    device: str = "cpu",
    max_minutes: float | None = None,
    stop_after_step: int | None = None,
    provenance: dict[str, str] | None = None,
    progress: bool = True,
    fit: PaceFit | None = None,
) -> TrainResult:
    """Train, checkpointing every `checkpoint_every` steps; resume from `checkpoint` when it exists.

    `stop_after_step` ends the run early at that step (with a checkpoint), as an interruption would.
    `fit` sets the step count, at most the configured one, from the run's own pace (schedule.py); the
    checkpoint keeps the last one fitted, and a resumed run goes on to it.
    `init_from` starts from a trained encoder's weights (same architecture) instead of a fresh
    initialisation: a further schedule on top of an earlier run; `init_model` does the same from an
    encoder in memory (left untouched: the run trains a copy).
    `catalog` may be several catalogs (a procedural and a real-art zoo): their reference sets are
    concatenated (references.load_training_references); `refs_cache` is one cache or one per catalog.
    """
    catalogs = [catalog] if isinstance(catalog, Path) else list(catalog)
    started = time.monotonic()
    if config.loss not in LOSSES:
        raise ValueError(f"unknown loss {config.loss!r}; expected one of {', '.join(LOSSES)}")
    checkpoint = checkpoint or out.with_name(out.stem + ".ckpt.safetensors")
    loss_curve = out.with_name(out.stem + ".loss.png")
    if refs is None:
        refs = load_training_references(
            catalogs,
            config.encoder.input_size,
            cleansing_threshold=config.cleansing_threshold,
            caches=[refs_cache] if isinstance(refs_cache, Path) else list(refs_cache or []),
            progress=progress,
        )
    model = build_model(config, backbone_weights)
    init_metadata: dict[str, str] = {}
    if init_from is not None or init_model is not None:
        start = load_encoder(init_from) if init_from is not None else init_model
        assert start is not None
        if start.config != model.config:
            raise ValueError(
                f"{init_from or 'the starting encoder'} has another architecture "
                f"({start.config.to_json()}) than this run ({model.config.to_json()})"
            )
        model.load_state_dict(start.state_dict())
        init_metadata = {"init_fingerprint": encoder_fingerprint(start)}
        if init_from is not None:
            init_metadata["init_from"] = str(init_from)
    model.to(device)
    proxies: nn.Parameter | None = None
    trainee: nn.Module = model
    resuming = resume and checkpoint.exists()
    if config.proxy_weight > 0:
        # A checkpoint brings its own proxies; only a new run places them.
        placed = (
            torch.zeros(refs.n_loras, model.config.dim, device=device)
            if resuming
            else initial_proxies(model, refs, config.proxy_init_samples, progress)
        )
        trainee = ProxyTrainee(model, placed)
        proxies = trainee.proxies
    optimizer = _make_optimizer(config, model, proxies)
    head_steps = head_steps_for(config)
    total = head_steps + steps_for(config, refs)
    features: torch.Tensor | None = None
    state = TrainingState(step=0, epoch=0, losses=[], numpy_rng={}, extra={})
    rng = np.random.default_rng(config.seed)
    if resuming:
        state = load_checkpoint(checkpoint, trainee, optimizer)
        if state.extra.get("train_config") != config.to_json():
            raise ValueError(
                f"{checkpoint} was written by a different training configuration; "
                "delete it or pass the same options"
            )
        rng = restore_generator(state.numpy_rng)
    else:
        torch.manual_seed(config.seed)
    named = " + ".join(str(c) for c in catalogs)
    extra = {"train_config": config.to_json(), "catalog": named, **init_metadata}
    first_step, cap = state.step, total
    if "fitted_total" in state.extra:  # resumed: go on to the total the interrupted run fitted last
        extra["fitted_total"] = state.extra["fitted_total"]
        total, fit = int(extra["fitted_total"]), None

    def snapshot() -> None:
        state.numpy_rng = dict(rng.bit_generator.state)
        state.extra = extra
        save_checkpoint(checkpoint, trainee, optimizer, state)

    per_epoch = max(1, round((total - head_steps) / config.epochs)) if config.epochs else total
    model.train()
    stopped_early = False
    bar = tqdm(total=total, initial=state.step, desc="train", unit="step", disable=not progress)
    while state.step < total:
        # phase 1 (head alone, pooled statistics computed once), then phase 2 (end to end)
        if state.step < head_steps:
            learning_rate = cosine(config.head_lr, state.step, head_steps)
        else:
            done, steps = state.step - head_steps, total - head_steps
            learning_rate = warm_cosine(config.lr, config.schedule, done, steps)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate * group.get("lr_scale", 1.0)
        if state.step < head_steps:
            features = pooled_features(model, refs, progress) if features is None else features
            loss = _head_step_loss(model, features, refs, config, rng, proxies)
        else:
            features = None  # phase 2: the backbone moves; free the cached statistics
            loss = _step_loss(model, refs, config, rng, proxies)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        state.losses.append(float(loss.detach()))
        state.step += 1
        state.epoch = max(0, state.step - head_steps) // per_epoch
        fitted = None if fit is None else fit.after_step(state.step - first_step, cap - first_step)
        if fitted is not None:
            total = first_step + fitted
            extra["fitted_total"], bar.total = str(total), total
        bar.update()
        bar.set_postfix(loss=f"{np.mean(state.losses[-20:]):.4f}")
        out_of_time = max_minutes is not None and (time.monotonic() - started) > max_minutes * 60
        interrupted = stop_after_step is not None and state.step >= stop_after_step
        if state.step % config.checkpoint_every == 0 or state.step == total or out_of_time or interrupted:
            snapshot()
        if out_of_time or interrupted:
            stopped_early = state.step < total
            break
    bar.close()
    model.eval()
    save_loss_curve(
        state.losses,
        loss_curve,
        f"{config.backbone} / {config.mining} on {' + '.join(c.name for c in catalogs)}",
    )
    metadata = {
        "train_config": config.to_json(),
        "steps": str(state.step),
        "seed": str(config.seed),
        "cleansing": json.dumps(refs.report.as_dict()),
        "catalogs": json.dumps([str(c) for c in catalogs]),
        "final_loss": f"{np.mean(state.losses[-50:]):.5f}" if state.losses else "nan",
        "stopped_early": str(stopped_early).lower(),
        **init_metadata,
        **(provenance or {}),
    }
    save_encoder(model, out, metadata)
    return TrainResult(
        out,
        checkpoint,
        loss_curve,
        state.step,
        list(state.losses),
        refs.report,
        time.monotonic() - started,
        stopped_early,
        model,
    )


__all__ = ["TrainConfig", "TrainResult", "build_model", "steps_for", "train", "untrained_encoder"]
